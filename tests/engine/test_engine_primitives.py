"""Every primitive through the engine, on the live path and the replay path.

Each test runs three ways (``mode``): ``live`` (the cached instance takes each new event),
``evicted`` (the instance cache is dropped at a checkpoint, so the next event replays the log)
and ``restarted`` (the engine is closed at the checkpoint and a new one recovers the run from
the same world). All three must give the same result, and no step result is recorded twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tests.engine.runtime import WAIT, assert_results_once, log_of, types_of, wait_for_type
from worldflow import (
    Engine,
    Run,
    WebhookRequest,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowFunction,
    create_hook,
    create_webhook,
    get_resume_data,
    get_state,
    get_writable,
    set_state,
    sleep,
    step,
    suspend,
    wait_for_event,
    workflow,
)
from worldflow.worlds import MemoryWorld, RunStatus, StepStatus

pytestmark = pytest.mark.anyio

MODES = ["live", "evicted", "restarted"]


class Harness:
    """An engine on one world that can be evicted or restarted at a checkpoint."""

    def __init__(self, world: MemoryWorld, workflows: Sequence[Any], mode: str) -> None:
        self.world = world
        self.workflows = workflows
        self.mode = mode
        self.engine: Engine | None = None
        self.replays = 0

    async def open(self) -> Engine:
        self.engine = Engine(self.world, self.workflows)
        await self.engine.__aenter__()
        return self.engine

    async def close(self) -> None:
        if self.engine is not None:
            self.replays += self.engine.driver.replays
            await self.engine.aclose()
            self.engine = None

    @property
    def e(self) -> Engine:
        assert self.engine is not None
        return self.engine

    async def checkpoint(self, run: Run) -> Run:
        """Lose the in-memory state as the mode says; return a handle on the new engine."""
        if self.mode == "evicted":
            assert self.e.evict(run.run_id) == 1
            assert self.e.progress(run.run_id) is None
        elif self.mode == "restarted":
            await self.close()
            await self.open()
        return await self.e.get_run(run.run_id)

    def rebuilt(self) -> int:
        return self.replays + (self.e.driver.replays if self.engine else 0)


@pytest.fixture(params=MODES)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    world = MemoryWorld()
    h = Harness(world, WORKFLOWS, request.param)
    await h.open()
    try:
        yield h
    finally:
        await h.close()
        await world.aclose()


async def finish(h: Harness, run: Run) -> Any:
    result = await run.result(timeout=WAIT)
    await assert_results_once(h.world, run.run_id)
    return result


@step
async def inc(x: int) -> int:
    return x + 1


@workflow
async def steps_and_hook(x: int) -> int:
    a, b = await asyncio.gather(inc(x), inc(x + 10))
    bonus: int = await create_hook(token=f"bonus:{x}")
    return await inc(a + b + bonus)


async def test_steps_gather_and_a_hook(harness: Harness) -> None:
    run = await harness.e.start(steps_and_hook, 1)
    await wait_for_type(run, "hook_created")
    assert harness.e.blocked_on(run.run_id) in (["hook bonus:1"], None)
    run = await harness.checkpoint(run)
    await harness.e.resume_hook("bonus:1", 100)
    assert await finish(harness, run) == 2 + 12 + 100 + 1
    if harness.mode != "live":
        assert harness.rebuilt() >= 1  # built by start(), then again from the log


@workflow
async def napper(x: int) -> int:
    await sleep("50ms")
    y = await inc(x)
    await sleep(0.05)
    return y


async def test_durable_sleep(harness: Harness) -> None:
    run = await harness.e.start(napper, 1)
    await wait_for_type(run, "wait_created")
    run = await harness.checkpoint(run)
    assert await finish(harness, run) == 2
    log = await log_of(harness.world, run.run_id)
    created = [e for e in log if e.type == "wait_created"]
    completed = [e for e in log if e.type == "wait_completed"]
    assert len(created) == len(completed) == 2
    for made, done in zip(created, completed, strict=True):
        assert made.resume_at is not None  # type: ignore[union-attr]
        assert done.created_at >= made.resume_at  # type: ignore[union-attr]


@workflow
async def collector(n: int) -> list[Any]:
    out = []
    hook = create_hook(token="items")
    async for item in hook:
        out.append(item)
        if len(out) == n:
            hook.dispose()
    return out


async def test_a_hook_takes_many_payloads(harness: Harness) -> None:
    run = await harness.e.start(collector, 3)
    await wait_for_type(run, "hook_created")
    await harness.e.resume_hook("items", "a")
    await wait_for_type(run, "hook_received")
    run = await harness.checkpoint(run)
    await harness.e.resume_hook("items", {"b": 2})
    await harness.e.resume_hook("items", ["c"])
    assert await finish(harness, run) == ["a", {"b": 2}, ["c"]]
    assert (await types_of(harness.world, run.run_id)).count("hook_disposed") == 1


@workflow
async def webhook_echo() -> dict[str, Any]:
    hook = create_webhook()
    request: WebhookRequest = await hook
    return {"method": request.method, "body": request.json(), "h": request.header("x-id")}


async def test_a_webhook_receives_a_request(harness: Harness) -> None:
    run = await harness.e.start(webhook_echo)
    await wait_for_type(run, "hook_created")
    run = await harness.checkpoint(run)
    hook = (await harness.world.list_hooks(run_id=run.run_id)).items[0]
    request = WebhookRequest(method="PUT", headers={"X-Id": "7"}, body=b'{"n": 1}')
    response = await harness.e.resume_webhook(hook.token, request)
    assert response.status == 202
    assert await finish(harness, run) == {"method": "PUT", "body": {"n": 1}, "h": "7"}


@workflow
async def event_waiter() -> list[Any]:
    early = await wait_for_event("early")
    late = await wait_for_event("late", timeout="10s")
    try:
        await wait_for_event("never", timeout="50ms")
        missed = "no"
    except TimeoutError:
        missed = "timed out"
    return [early, late, missed]


async def test_named_events_buffered_late_and_timed_out(harness: Harness) -> None:
    run = await harness.e.start(event_waiter)
    await harness.e.raise_event(run.run_id, "early", 1)  # raised before anyone waits
    await wait_for_type(run, "wait_created")
    run = await harness.checkpoint(run)
    await harness.e.raise_event(run.run_id, "late", {"two": 2})
    assert await finish(harness, run) == [1, {"two": 2}, "timed out"]


ASKED: list[Any] = []


@step
async def needs_approval(doc: str) -> str:
    answer = get_resume_data()
    if answer is None:
        ASKED.append(doc)
        await suspend({"question": f"approve {doc}?"})
    return f"{doc}: {answer['verdict']}"


@workflow
async def approval(doc: str) -> str:
    return await needs_approval(doc)


async def test_step_suspension_and_resume_step(harness: Harness) -> None:
    ASKED.clear()
    run = await harness.e.start(approval, "memo")
    await wait_for_type(run, "step_suspended")
    steps = (await harness.world.list_steps(run.run_id)).items
    assert steps[0].status is StepStatus.SUSPENDED
    run = await harness.checkpoint(run)
    await harness.e.resume_step(run.run_id, "needs_approval", {"verdict": "yes"})
    assert await finish(harness, run) == "memo: yes"
    assert ASKED == ["memo"]  # asked once; the resumed attempt had its answer
    step_view = (await harness.world.list_steps(run.run_id)).items[0]
    assert step_view.attempt == 2


@step
async def record(value: int) -> int:
    return value * 10


@workflow
async def stateful() -> dict[str, Any]:
    state = get_state()
    state["seen"].append(await record(1))
    set_state(state)
    await create_hook(token="state:go")
    state = get_state()
    state["seen"].append(await record(2))
    set_state(state)
    return get_state()  # type: ignore[no-any-return]


async def test_workflow_state(harness: Harness) -> None:
    run = await harness.e.start(stateful, initial_state={"seen": []})
    await wait_for_type(run, "hook_created")
    assert (await run.info()).state == {"seen": [10]}
    run = await harness.checkpoint(run)
    await harness.e.resume_hook("state:go", None)
    assert await finish(harness, run) == {"seen": [10, 20]}
    assert (await run.info()).state == {"seen": [10, 20]}


@step
async def speak(words: list[str]) -> int:
    out = get_writable()
    for word in words:
        await out.write(word)
    side = get_writable("side")
    await side.write({"count": len(words)})
    return len(words)


@workflow
async def speaker() -> int:
    first = await speak(["hello", "world"])
    await create_hook(token="speak:more")
    return first + await speak(["again"])


async def test_streams_written_by_steps(harness: Harness) -> None:
    run = await harness.e.start(speaker)
    await wait_for_type(run, "hook_created")
    run = await harness.checkpoint(run)
    await harness.e.resume_hook("speak:more", None)
    assert await finish(harness, run) == 3
    assert [v async for v in run.readable()] == ["hello", "world", "again"]
    assert [v async for v in run.readable("side")] == [{"count": 2}, {"count": 1}]
    assert [v async for v in run.readable("never-written")] == []


@workflow
async def child(x: int) -> int:
    await create_hook(token=f"child:{x}")
    return await inc(x)


@workflow
async def failing_child(x: int) -> int:
    raise KeyError(x)


@workflow
async def parent(x: int) -> list[Any]:
    ok = await child(x)
    try:
        await failing_child(x)
        failed = "no"
    except WorkflowFailedError as exc:
        failed = exc.error_name
    return [ok, failed]


async def test_child_workflows(harness: Harness) -> None:
    run = await harness.e.start(parent, 5)
    kid = await wait_for_type(run, "step_created")
    await wait_for_type(run, "hook_created")
    await wait_for_type(run, "step_completed")  # the builtin step has created the child
    child_id = f"{run.run_id}-{kid.correlation_id}"
    child_run = await harness.e.get_run(child_id)
    await wait_for_type(child_run, "hook_created")
    run = await harness.checkpoint(run)
    await harness.e.resume_hook("child:5", None)
    assert await finish(harness, run) == [6, "KeyError"]
    info = await (await harness.e.get_run(child_id)).info()
    assert info.parent_run_id == run.run_id
    assert info.output == 6
    children = (await harness.e.list_runs(workflow=failing_child)).items
    assert [c.parent_run_id for c in children] == [run.run_id]


async def test_cancelling_a_parent_cancels_its_child(harness: Harness) -> None:
    run = await harness.e.start(parent, 8)
    kid = await wait_for_type(run, "step_created")
    await wait_for_type(run, "step_completed")  # the builtin step has created the child
    child_run = await harness.e.get_run(f"{run.run_id}-{kid.correlation_id}")
    await wait_for_type(child_run, "hook_created")
    run = await harness.checkpoint(run)
    await harness.e.cancel(run.run_id, "never mind")
    with pytest.raises(WorkflowCancelledError):
        await run.result(timeout=WAIT)
    child_run = await harness.e.get_run(child_run.run_id)
    with pytest.raises(WorkflowCancelledError, match="parent run"):
        await child_run.result(timeout=WAIT)


PAUSE_SEEN: list[int] = []


@step
async def note(x: int) -> int:
    PAUSE_SEEN.append(x)
    return x


@workflow
async def pausable() -> list[Any]:
    first = await create_hook(token="pause:1")
    await note(1)
    second = await create_hook(token="pause:2")
    await note(2)
    return [first, second]


async def test_suspend_buffers_hooks_and_schedules_nothing(harness: Harness) -> None:
    PAUSE_SEEN.clear()
    run = await harness.e.start(pausable)
    await wait_for_type(run, "hook_created")
    await run.suspend("hold on")
    await harness.e.resume_hook("pause:1", "one")
    run = await harness.checkpoint(run)
    assert await run.status() is RunStatus.SUSPENDED
    log = await types_of(harness.world, run.run_id)
    assert log[-2:] == ["run_suspended", "hook_received"]
    assert "step_created" not in log
    assert PAUSE_SEEN == []
    await run.resume()
    await wait_for_type(run, "hook_created", nth=2)
    await harness.e.resume_hook("pause:2", "two")
    assert await finish(harness, run) == ["one", "two"]
    assert PAUSE_SEEN == [1, 2]


WORKFLOWS: list[WorkflowFunction[..., Any]] = [
    steps_and_hook,
    napper,
    collector,
    webhook_echo,
    event_waiter,
    approval,
    stateful,
    speaker,
    child,
    failing_child,
    parent,
    pausable,
]
