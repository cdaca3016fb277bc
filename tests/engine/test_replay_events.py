"""Named events, workflow state, suspension and cancellation, on the live and replay paths."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.engine.history import History
from worldflow import (
    create_hook,
    get_state,
    get_workflow_metadata,
    set_state,
    step,
    wait_for_event,
    workflow,
)
from worldflow.worlds import StateUpdated, WaitCompleted, WaitCreated


@step
async def work(x: int) -> int:
    return x * 10


def test_wait_for_event_then_raise() -> None:
    @workflow
    async def shipping() -> Any:
        return await wait_for_event("shipped", timeout="7d")

    h = History(shipping)
    wait = h.events[-1]
    assert isinstance(wait, WaitCreated)
    assert wait.event_name == "shipped"
    assert wait.resume_at is not None
    assert h.progress.blocked_on == ["event shipped"]
    assert h.progress.waits == [(wait.correlation_id, wait.resume_at)]
    h.raise_event("other", 1)  # nobody waits for it: kept
    h.raise_event("shipped", {"carrier": "ups"})
    assert h.result == {"carrier": "ups"}
    closed = [e for e in h.events if isinstance(e, WaitCompleted)]
    assert [e.correlation_id for e in closed] == [wait.correlation_id]


def test_event_raised_before_the_wait_is_kept_for_it() -> None:
    @workflow
    async def late_waiter() -> list[Any]:
        first = await work(1)
        return [first, await wait_for_event("go"), await wait_for_event("go")]

    h = History(late_waiter)
    h.raise_event("go", "a")
    h.raise_event("go", "b")
    h.run_steps()
    assert h.result == [10, "a", "b"]
    assert "wait_created" not in h.types(), "buffered events need no wait"


def test_event_timeout_raises_timeout_error_and_a_later_event_waits_for_the_next_wait() -> None:
    @workflow
    async def patient() -> list[Any]:
        try:
            await wait_for_event("approved", timeout=60)
            first = "approved"
        except TimeoutError as exc:
            first = str(exc)
        await work(1)
        return [first, await wait_for_event("approved")]

    h = History(patient)
    h.fire()
    h.raise_event("approved", "late")
    h.run_steps()
    first, second = h.result
    assert "no event 'approved' arrived" in first
    assert second == "late"


def test_state_starts_from_initial_state_and_records_each_update() -> None:
    @workflow
    async def stateful() -> Any:
        state = get_state()
        state["steps"].append("start")
        set_state(state)
        state["steps"].append(await work(1))
        set_state(state)
        set_state({**state, "done": True})
        return get_state()

    h = History(stateful, initial_state={"steps": []})
    h.run_steps()
    updates = [e for e in h.events if isinstance(e, StateUpdated)]
    assert [bytes(e.state) for e in updates] == [
        b'{"steps":["start"]}',
        b'{"steps":["start",10]}',
        b'{"steps":["start",10],"done":true}',
    ]
    assert h.result == {"steps": ["start", 10], "done": True}


def test_suspension_holds_every_event_until_resumed() -> None:
    @workflow
    async def pausable() -> list[Any]:
        hook = create_hook(token="h")
        a = await work(1)
        return [a, await hook, await work(2)]

    h = History(pausable)
    corr = h.step_id("work")
    h.suspend()
    assert h.progress.suspended
    h.complete(corr, 10)
    h.resume_hook("h", "payload")
    assert h.progress.commands == []
    assert h.progress.blocked_on == ["step tests.engine.test_replay_events:work"]
    resumed = h.resume()
    assert not resumed.suspended
    assert h.progress.pending_steps == h.step_ids("work") != [corr]
    h.run_steps()
    assert h.result == [10, "payload", 20]


def test_cancel_ends_the_instance_without_commands() -> None:
    @workflow
    async def long() -> int:
        return await work(1)

    h = History(long)
    h.cancel()
    assert h.progress.finished
    assert h.progress.commands == []
    assert h.progress.pending_steps == []
    assert h.types()[-1] == "run_cancelled"


def test_workflow_metadata() -> None:
    @workflow(name="meta")
    async def meta() -> list[Any]:
        m = get_workflow_metadata()
        return [m.workflow_name, m.run_id, m.resource_id, m.metadata, m.started_at]

    h = History(meta, resource_id="user-9", metadata={"region": "eu"})
    assert h.result == ["meta", h.run_id, "user-9", {"region": "eu"}, h.events[1].created_at]


def test_events_held_during_a_suspension_come_in_the_order_they_were_raised() -> None:
    # Planted once (held events resumed in reverse) and caught by no test: two waiters for
    # one name, and a third event for a wait that starts after them, all held.
    @workflow
    async def two_waits() -> list[Any]:
        first, second = await asyncio.gather(wait_for_event("e"), wait_for_event("e"))
        return [first, second, await wait_for_event("e"), await wait_for_event("f")]

    h = History(two_waits)
    h.suspend()
    for payload in (1, 2, 3):
        h.raise_event("e", payload)
    h.raise_event("f", 4)
    assert h.progress.commands == []
    h.resume()
    assert h.result == [1, 2, 3, 4]
    h.check_replay()
