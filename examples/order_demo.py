"""An order service on worldflow: run it with ``make demo`` (``python -m examples.order_demo``).

Each order runs a durable workflow: stock and payment in parallel (the card network fails the
first try, so the payment step is retried), a durable cooling-off sleep, an approval hook that
a person (here, the demo itself) resolves, and a "shipped" event from the warehouse. The demo
prints each run's timeline, read back from the run's event log, and its result.

It uses the default world (``open_world()``: ``$WORLDFLOW_WORLD`` or ``file://./.worldflow``),
so the runs are on disk afterwards; point the inspector at the same directory to browse them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from worldflow import (
    Engine,
    Run,
    WorkflowFailedError,
    build_timeline,
    create_hook,
    format_timeline,
    get_step_metadata,
    open_world,
    sleep,
    step,
    wait_for_event,
    workflow,
)
from worldflow.worlds import RunStatus, World

# -- the service: steps and the workflow -------------------------------------------------------

_card_network_calls: dict[str, int] = {}


@step
async def reserve_stock(order_id: str, items: list[str]) -> dict[str, Any]:
    """Hold the items in the warehouse."""
    await asyncio.sleep(0.02)  # a call to the stock service
    return {"order": order_id, "held": sorted(items)}


@step(max_retries=3, backoff="100ms")
async def charge_card(order_id: str, cents: int) -> str:
    """Charge the customer; the card network times out on the first try of every order."""
    key = get_step_metadata().step_id  # the same on every attempt: an idempotency key
    _card_network_calls[key] = _card_network_calls.get(key, 0) + 1
    await asyncio.sleep(0.01)
    if _card_network_calls[key] == 1:
        raise ConnectionError("card network timed out")
    return f"receipt-{order_id}-{cents}"


@step
async def send_email(order_id: str, text: str) -> None:
    """Tell the customer."""
    await asyncio.sleep(0.005)


@workflow
async def place_order(order_id: str, items: list[str], cents: int) -> dict[str, Any]:
    """Reserve and charge in parallel, cool off, wait for approval, wait for shipping."""
    stock, receipt = await asyncio.gather(
        reserve_stock(order_id, items), charge_card(order_id, cents)
    )
    await sleep("300ms")  # a durable timer: survives restarts, holds no worker
    approval = await create_hook(token=f"approve:{order_id}", metadata={"cents": cents})
    if not approval["ok"]:
        await send_email(order_id, f"order {order_id} was declined: {approval['why']}")
        return {"order": order_id, "status": "declined", "why": approval["why"]}
    try:
        shipped = await wait_for_event("shipped", timeout="30s")
    except TimeoutError:
        return {"order": order_id, "status": "not shipped in time"}
    await send_email(order_id, f"order {order_id} shipped with {shipped['carrier']}")
    return {
        "order": order_id,
        "status": "shipped",
        "held": stock["held"],
        "receipt": receipt,
        "tracking": shipped["tracking"],
    }


# -- the timeline printer ----------------------------------------------------------------------


async def print_timeline(world: World, run: Run) -> None:
    """Print the run's timeline (read back from its log) and its result."""
    info = await run.info()
    events = (await world.list_events(run.run_id)).items
    print(f"\norder {info.input['order_id']}  (run {run.run_id}, {info.status})")
    print(format_timeline(e for e in build_timeline(events) if e.text))
    if info.status is RunStatus.COMPLETED:
        print(f"  result: {info.output}")
    elif info.error is not None:
        print(f"  error: {info.error.name}: {info.error.message}")


# -- the demo ----------------------------------------------------------------------------------


async def wait_for_hook(run: Run) -> None:
    """Wait (on the world's notifications) until the run is waiting on its approval hook."""
    async for event in run.events():
        if event.type == "hook_created":
            return


async def main() -> None:
    url = os.environ.get("WORLDFLOW_WORLD", "file://./.worldflow")
    world = await open_world(url)
    print(f"worldflow order demo on {url}")
    try:
        async with Engine(world, [place_order]) as engine:
            # Runs left waiting by an earlier, interrupted demo were recovered on enter.
            leftovers = await engine.list_runs(workflow=place_order, status=RunStatus.RUNNING)
            for left in leftovers.items:
                await engine.cancel(left.run_id, "left over from an earlier demo")
            batch = uuid.uuid4().hex[:6]
            orders = {
                f"{batch}-1": (["kettle", "mug"], 4599),
                f"{batch}-2": (["lamp"], 2999),
            }
            runs = {
                order_id: await engine.start(
                    place_order, order_id, items, cents, metadata={"batch": batch}
                )
                for order_id, (items, cents) in orders.items()
            }
            first, second = runs
            await asyncio.gather(*(wait_for_hook(run) for run in runs.values()))
            hook = await engine.get_hook_by_token(f"approve:{first}")
            print(f"approval hook for {first} is live (run {hook.run_id}); approving it")
            await engine.resume_hook(f"approve:{first}", {"ok": True})
            await engine.resume_hook(f"approve:{second}", {"ok": False, "why": "address"})
            await engine.raise_event(
                runs[first].run_id, "shipped", {"carrier": "ACME", "tracking": "TRK-42"}
            )
            for run in runs.values():
                try:
                    await run.result(timeout=30)
                except WorkflowFailedError as exc:  # shown in the timeline below
                    print(f"run {run.run_id} failed: {exc}")
                await print_timeline(world, run)
    finally:
        await world.aclose()


if __name__ == "__main__":
    asyncio.run(main())
