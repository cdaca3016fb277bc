"""Workflows the Mastra API tests drive with the real ``@mastra/client-js``."""

from __future__ import annotations

from typing import Any

from worldflow import (
    FatalError,
    WorkflowFunction,
    get_resume_data,
    get_state,
    set_state,
    step,
    suspend,
    workflow,
)


@step
async def add(a: int, b: int) -> dict[str, int]:
    """Add two numbers."""
    return {"sum": a + b}


@step
async def approve(total: dict[str, int]) -> dict[str, Any]:
    """Wait for a person: suspend until resumed with ``{"approved": bool}``."""
    answer = get_resume_data()
    if answer is None:
        await suspend({"reason": "need approval"})
    return {**total, "approved": bool(answer["approved"])}


@workflow(name="approval-wf")
async def approval(a: int, b: int) -> dict[str, Any]:
    """Add two numbers, then wait for approval."""
    total = await add(a, b)
    return await approve(total)


@step(max_retries=0)
async def explode(message: str) -> None:
    """Fail for good."""
    raise FatalError(message)


@workflow(name="failing-wf")
async def failing(message: str) -> None:
    """A run that fails."""
    await explode(message)


@workflow(name="state-wf")
async def with_state(order: dict[str, Any]) -> dict[str, Any]:
    """One parameter: Mastra may send the object itself. Reads the initial state."""
    state = get_state() or {}
    set_state({**state, "seen": order.get("id")})
    return {"order": order, "state": get_state()}


WORKFLOWS: list[WorkflowFunction[..., Any]] = [approval, failing, with_state]
