"""Crash and restart: what a new engine finds in the log and picks up.

A "crash" here is closing the engine while work is in flight (its tasks are cancelled, nothing
more is recorded), then entering a new engine on the same world.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tests.engine.runtime import (
    WAIT,
    assert_results_once,
    log_of,
    running,
    types_of,
    wait_for_type,
)
from worldflow import (
    Backoff,
    Engine,
    WorkflowFunction,
    WorldError,
    create_hook,
    sleep,
    step,
    workflow,
)
from worldflow._replay.child_contract import CHILD_TOKEN_PREFIX
from worldflow._runtime.driver import RUN_QUEUE
from worldflow.worlds import (
    NULL,
    AnyEvent,
    EventResult,
    Fence,
    HookReceived,
    MemoryWorld,
    QueueMessage,
    RunCreated,
    RunStatus,
    StepStarted,
    StepStatus,
)

pytestmark = pytest.mark.anyio

BLOCK: dict[str, bool] = {}
RAN: list[str] = []
GATES: dict[str, asyncio.Event] = {}


@step(max_retries=3)
async def sticky(key: str) -> str:
    """Hang while ``BLOCK[key]`` is set (the first engine), answer otherwise."""
    RAN.append(key)
    if BLOCK.get(key):
        GATES[key].set()
        await asyncio.Event().wait()
    return f"done {key}"


@workflow
async def one_sticky(key: str) -> str:
    return await sticky(key)


@workflow
async def nap_then_step(key: str) -> str:
    await sleep("80ms")
    return await sticky(key)


@step(max_retries=2, backoff=Backoff.of("150ms"))
async def fails_once(key: str) -> int:
    RAN.append(key)
    if RAN.count(key) == 1:
        raise RuntimeError("first try fails")
    return RAN.count(key)


@workflow
async def retried(key: str) -> int:
    return await fails_once(key)


@workflow
async def waiter(token: str) -> Any:
    return await create_hook(token=token)


@workflow
async def kid(x: int) -> int:
    return x * 3


@workflow
async def mom(x: int) -> int:
    got = await kid(x)
    return got + 1


WORKFLOWS: list[WorkflowFunction[..., Any]] = [
    one_sticky,
    nap_then_step,
    retried,
    waiter,
    kid,
    mom,
]


@pytest.fixture
async def world() -> AsyncIterator[MemoryWorld]:
    BLOCK.clear()
    RAN.clear()
    GATES.clear()
    world = MemoryWorld()
    yield world
    await world.aclose()


async def test_a_step_in_flight_runs_again_after_a_restart(world: MemoryWorld) -> None:
    BLOCK["a"] = True
    GATES["a"] = asyncio.Event()
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_sticky, "a")
        await asyncio.wait_for(GATES["a"].wait(), WAIT)
    BLOCK["a"] = False  # the "crash" lost the first attempt
    async with running(world, WORKFLOWS) as engine:
        run = await engine.get_run(run.run_id)
        assert await run.result(timeout=WAIT) == "done a"
    assert RAN == ["a", "a"]  # at least once...
    await assert_results_once(world, run.run_id)  # ...recorded exactly once
    view = (await world.list_steps(run.run_id)).items[0]
    assert view.attempt == 2
    assert view.status is StepStatus.COMPLETED


async def test_timers_fire_after_a_restart(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(nap_then_step, "t")
        await wait_for_type(run, "wait_created")
    assert RAN == []
    async with running(world, WORKFLOWS) as engine:
        run = await engine.get_run(run.run_id)
        assert await run.result(timeout=WAIT) == "done t"
    log = await log_of(world, run.run_id)
    made = next(e for e in log if e.type == "wait_created")
    done = next(e for e in log if e.type == "wait_completed")
    assert made.resume_at is not None  # type: ignore[union-attr]
    assert done.created_at >= made.resume_at  # type: ignore[union-attr]


async def test_a_retry_backoff_is_kept_across_a_restart(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(retried, "b")
        retry = await wait_for_type(run, "step_retrying")
    async with running(world, WORKFLOWS) as engine:
        run = await engine.get_run(run.run_id)
        assert await run.result(timeout=WAIT) == 2
    starts = [e for e in await log_of(world, run.run_id) if e.type == "step_started"]
    assert retry.data["retry_after"] is not None
    assert starts[1].created_at >= retry.data["retry_after"]


async def test_attempts_used_up_by_crashes_fail_the_step(world: MemoryWorld) -> None:
    BLOCK["c"] = True
    GATES["c"] = asyncio.Event()
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_sticky, "c")
        await asyncio.wait_for(GATES["c"].wait(), WAIT)
    step_id = (await world.list_steps(run.run_id)).items[0].step_id
    # The engine's stop was recorded (step_interrupted): not one of the step's attempts.
    # Then four starts with no outcome: three lost to crashes, and the restart's start
    # finds the fourth lost too, past the default max_lost_attempts=3.
    for _ in range(4):
        await world.append(run.run_id, [StepStarted(run_id=run.run_id, correlation_id=step_id)])
    BLOCK["c"] = False
    async with running(world, WORKFLOWS) as engine:
        run = await engine.get_run(run.run_id)
        info_error = None
        try:
            await run.result(timeout=WAIT)
        except Exception as exc:
            info_error = exc
    assert info_error is not None
    assert "lost 4 attempts to crashes" in str(info_error)
    assert RAN == ["c"]  # the fifth start did not run the function
    view = (await world.list_steps(run.run_id)).items[0]
    assert view.status is StepStatus.FAILED


async def test_recovery_picks_up_pending_and_running_runs_only(world: MemoryWorld) -> None:
    # A run created by a client with no engine (only run_created in the log).
    await world.append(
        "from-outside",
        [
            RunCreated(
                run_id="from-outside",
                workflow_name=kid.name,
                input=kid.definition.encode_input(4),
            )
        ],
    )
    async with running(world, WORKFLOWS) as engine:
        parked = await engine.start(waiter, "rec:1")
        paused = await engine.start(waiter, "rec:2")
        await wait_for_type(paused, "hook_created")
        await paused.suspend()
        outside = await engine.get_run("from-outside")
        assert await outside.result(timeout=WAIT) == 12
        await wait_for_type(parked, "hook_created")
    engine = Engine(world, WORKFLOWS, recover=False)
    async with engine:
        assert await engine.recover() == 1  # the parked run; not the suspended one
        assert engine.progress(parked.run_id) is not None
        assert engine.progress(paused.run_id) is None
        await engine.resume_hook("rec:1", "one")
        assert await (await engine.get_run(parked.run_id)).result(timeout=WAIT) == "one"
        await engine.resume_hook("rec:2", "two")  # buffered while suspended
        await engine.resume(paused.run_id)
        assert await (await engine.get_run(paused.run_id)).result(timeout=WAIT) == "two"


async def test_a_parent_learns_of_a_child_that_ended_during_a_crash(
    world: MemoryWorld,
) -> None:
    async with running(world, WORKFLOWS) as engine:

        async def lost(child: Any) -> bool:  # the crash: the parent is never told
            return False

        engine.driver.endings.notify_parent = lost  # type: ignore[method-assign]
        run = await engine.start(mom, 2)
        made = await wait_for_type(run, "step_created")
        await wait_for_type(run, "step_completed")  # the builtin step has created the child
        child = await engine.get_run(f"{run.run_id}-{made.correlation_id}")
        assert await child.result(timeout=WAIT) == 6
    assert await (await engine.get_run(run.run_id)).status() is RunStatus.RUNNING
    async with running(world, WORKFLOWS) as engine:
        assert await (await engine.get_run(run.run_id)).result(timeout=WAIT) == 7
    tokens = [h.token for h in (await world.list_hooks(run_id=run.run_id)).items]
    assert tokens == [f"{CHILD_TOKEN_PREFIX}{child.run_id}"]


async def test_work_handed_over_through_the_queue(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS, recover=False) as engine:
        run = await engine.start(waiter, "q:1")
        await wait_for_type(run, "hook_created")
        hook = await world.get_hook_by_token("q:1")
        # Another process resumes the hook through the world alone, and asks for a drive.
        await world.append(
            run.run_id,
            [HookReceived(run_id=run.run_id, correlation_id=hook.hook_id, payload=NULL)],
        )
        await world.enqueue(
            RUN_QUEUE,
            QueueMessage(kind="run", run_id=run.run_id),
            idempotency_key=f"run:{run.run_id}",
        )
        assert await run.result(timeout=WAIT) is None


async def test_the_cache_is_bounded_and_evicted_runs_replay(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS, max_cached_runs=2) as engine:
        runs = [await engine.start(waiter, f"lru:{i}") for i in range(6)]
        for run in runs:
            await wait_for_type(run, "hook_created")
        assert len(engine.driver.cached_runs()) <= 2
        before = engine.driver.replays
        for i in range(len(runs)):
            await engine.resume_hook(f"lru:{i}", i)
        assert [await r.result(timeout=WAIT) for r in runs] == list(range(6))
        assert engine.driver.replays - before >= 4  # the evicted ones were rebuilt


async def test_two_engines_driving_one_run_agree(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as first, running(world, WORKFLOWS) as second:
        runs = [await first.start(nap_then_step, f"two:{i}") for i in range(5)]
        for run in runs:
            await second.driver.drive(run.run_id)  # both now hold a live instance
        results = [await r.result(timeout=WAIT) for r in runs]
        assert results == [f"done two:{i}" for i in range(5)]
        for run in runs:
            await assert_results_once(world, run.run_id)
            kinds = await types_of(world, run.run_id)
            assert kinds.count("wait_completed") == 1
            assert kinds.count("step_created") == 1


async def test_blocked_on_says_what_a_run_waits_for(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(waiter, "blocked:1")
        await wait_for_type(run, "hook_created")
        assert engine.blocked_on(run.run_id) == ["hook blocked:1"]
        engine.evict(run.run_id)
        assert engine.blocked_on(run.run_id) is None
        await engine.resume_hook("blocked:1", 1)
        assert await run.result(timeout=WAIT) == 1
        assert engine.blocked_on(run.run_id) is None  # finished runs leave the cache


class FlakyWorld(MemoryWorld):
    """A memory world whose appends holding ``event_type`` fail the first ``failures`` times."""

    def __init__(self, event_type: str, failures: int) -> None:
        super().__init__()
        self.event_type = event_type
        self.failures = failures

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        if self.failures and any(e.type == self.event_type for e in events):
            self.failures -= 1
            raise WorldError("disk on fire (for a moment)")
        return await super().append(run_id, events, fence=fence, expected_seq=expected_seq)


async def test_a_world_error_while_driving_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    world = FlakyWorld("wait_completed", failures=2)
    try:
        async with running(world, WORKFLOWS) as engine:
            run = await engine.start(nap_then_step, "flaky-world")
            assert await run.result(timeout=WAIT) == "done flaky-world"
    finally:
        await world.aclose()
    assert world.failures == 0
    assert caplog.text.count("driving failed") == 2


async def test_a_step_result_that_could_not_be_recorded_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    RAN.clear()
    # Two failures: the result fused with the run's next decisions, then the result alone.
    world = FlakyWorld("step_completed", failures=2)
    try:
        async with running(world, WORKFLOWS) as engine:
            run = await engine.start(one_sticky, "lost-result")
            assert await run.result(timeout=WAIT) == "done lost-result"
        await assert_results_once(world, run.run_id)
    finally:
        await world.aclose()
    assert RAN == ["lost-result", "lost-result"]  # at least once
    assert "failed to run" in caplog.text
