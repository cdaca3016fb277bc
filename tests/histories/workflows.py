"""The workflows whose recorded histories are kept in this folder (the code as it is now).

Each one exercises a few primitives; ``record.py`` runs them through the engine and saves
their logs, ``test_histories.py`` replays the saved logs against this code. Names are stable
(``golden.*``): a history refers to its workflow by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from examples.order_demo import place_order
from worldflow import (
    FatalError,
    RetryableError,
    StepFailedError,
    WebhookResponse,
    WorkflowFailedError,
    WorkflowFunction,
    create_hook,
    create_webhook,
    get_resume_data,
    get_state,
    get_step_metadata,
    now,
    set_state,
    sleep,
    step,
    suspend,
    uuid4,
    wait_for_event,
    workflow,
)

__all__ = ["WORKFLOWS"]

_attempts: dict[str, int] = {}


@step(name="golden.add")
async def add(a: int, b: int) -> int:
    return a + b


@step(name="golden.flaky", max_retries=3, backoff="10s")
async def flaky(x: int) -> int:
    """Fails its first attempt (once per step call), then works."""
    key = get_step_metadata().step_id
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] == 1:
        raise RetryableError("first attempt fails")
    return x * 2


@step(name="golden.fatal")
async def fatal(x: int) -> int:
    raise FatalError(f"{x} is refused")


@step(name="golden.approval")
async def approval(order: str) -> str:
    """Parks itself until someone resumes it with a decision (Mastra-style suspension)."""
    decision = get_resume_data()
    if decision is None:
        suspend({"order": order, "question": "approve?"})
    return f"{order}: {decision}"


@workflow(name="golden.steps")
async def steps_flow(n: int) -> dict[str, Any]:
    """Sequential steps, a gather (results in argument order, and the order they came in), a
    retried step, a fatal failure caught."""
    first = await add(n, 1)
    arrived: list[str] = []

    async def tracked(label: str, call: Awaitable[int]) -> int:
        value = await call
        arrived.append(label)
        return value

    trio = await asyncio.gather(
        tracked("a", add(first, 10)), tracked("b", add(first, 20)), tracked("c", flaky(first))
    )
    try:
        await fatal(n)
    except StepFailedError as exc:
        caught = f"{exc.error_name}: {exc.error_message}"
    return {"first": first, "gather": list(trio), "arrived": arrived, "caught": caught}


@workflow(name="golden.timers")
async def timers_flow() -> dict[str, Any]:
    """A durable sleep, a timeout that does not fire and one that does, the workflow clock."""
    start = now()
    await sleep("1d")
    async with asyncio.timeout(3600):
        quick = await add(1, 1)
    try:
        await asyncio.wait_for(wait_for_event("never"), timeout=60)
        late = "event"
    except TimeoutError:
        late = "timed out"
    return {"quick": quick, "late": late, "elapsed": (now() - start).total_seconds()}


@workflow(name="golden.hooks")
async def hooks_flow(order: str) -> dict[str, Any]:
    """A hook awaited once, one iterated, two hook-or-sleep races, a webhook."""
    single = await create_hook(token=f"single:{order}")
    many: list[Any] = []
    async for payload in create_hook(token=f"many:{order}"):
        many.append(payload)
        if len(many) == 2:
            break
    races = []
    for name in ("fast", "slow"):
        with create_hook(token=f"{name}:{order}") as hook:
            got = asyncio.ensure_future(hook.receive())
            nap = asyncio.ensure_future(sleep("1h"))
            done, pending = await asyncio.wait((got, nap), return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            races.append(got.result() if got in done else "slept")
    hook = create_webhook(respond_with=WebhookResponse(status=200, body=b"thanks"))
    request = await hook
    return {
        "single": single,
        "many": many,
        "races": races,
        "webhook": [request.method, request.body.decode()],
    }


@workflow(name="golden.events")
async def events_flow() -> list[Any]:
    """An event raised before the wait, a wait that times out, a wait without a timeout."""
    early = await wait_for_event("early")
    try:
        late = await wait_for_event("late", timeout="5m")
    except TimeoutError:
        late = "no late event"
    final = await wait_for_event("final")
    return [early, late, final, str(uuid4())]


@workflow(name="golden.state")
async def state_flow() -> Any:
    """State set from the initial state, read back, updated twice."""
    state = dict(get_state() or {})
    state["seen"] = state.get("seen", 0) + 1
    set_state(state)
    await sleep("1m")
    set_state({**get_state(), "done": True})
    return get_state()


@workflow(name="golden.child")
async def child_flow(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    await sleep("10m")
    return await add(x, x)


@workflow(name="golden.parent")
async def parent_flow(x: int) -> list[Any]:
    """A child workflow that returns, and one that fails (caught)."""
    ok = await child_flow(x)
    try:
        await child_flow(-x)
        failed = "no"
    except WorkflowFailedError as exc:
        failed = exc.error_name
    return [ok, failed]


@workflow(name="golden.suspension")
async def suspension_flow(order: str) -> list[str]:
    """A step that suspends until resume_step, and a hook sent while the run is suspended."""
    decision = await approval(order)
    payload = await create_hook(token=f"after:{order}")
    return [decision, str(payload)]


@workflow(name="golden.cancelled")
async def cancelled_flow() -> str:
    """Waits for a hook that never comes: the run is cancelled."""
    await create_hook(token="golden:never")
    return "unreachable"


@workflow(name="golden.changed")
async def changed_flow(item: str) -> list[int]:
    """The current version: an audit step was inserted after the first step (v1 in
    record.py did not have it), so v1's history must not replay against it."""
    first = await add(1, 2)
    await add(100, 0)  # new in v2
    second = await add(first, 3)
    return [first, second]


WORKFLOWS: dict[str, WorkflowFunction[..., Any]] = {
    wf.name: wf
    for wf in (
        steps_flow,
        timers_flow,
        hooks_flow,
        events_flow,
        state_flow,
        child_flow,
        parent_flow,
        suspension_flow,
        cancelled_flow,
        changed_flow,
        place_order,
    )
}
"""Every workflow a history in this folder may be a run of, by registered name."""
