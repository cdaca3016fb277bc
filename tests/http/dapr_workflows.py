"""Workflows the Dapr tests (and the JS client test) start by name."""

from __future__ import annotations

from typing import Any

from worldflow import FatalError, step, wait_for_event, workflow


@workflow(name="order_wf")
async def order_wf(order: Any) -> dict[str, Any]:
    """Wait for the ``approval`` event; return the order with the decision."""
    decision = await wait_for_event("approval")
    return {"order": order, "decision": decision}


@workflow(name="quick_wf")
async def quick_wf() -> str:
    """Finish at once."""
    return "done"


@step
async def explode() -> None:
    """Fail for good."""
    raise FatalError("kaboom")


@workflow(name="failing_wf")
async def failing_wf(x: int) -> None:
    """Fail in a step."""
    await explode()


DAPR_WORKFLOWS = [order_wf, quick_wf, failing_wf]
