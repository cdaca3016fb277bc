"""``wake`` and ``retry_now``: a sleep ended now and a backing-off step retried now, each by an
event anyone may append that carries no result (``wait_woken``, ``step_woken``); the engine
records the outcome itself, and the log replays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.engine.runtime import WAIT, log_of, running
from worldflow import Client, step, workflow
from worldflow._registry import Registry
from worldflow._replay.instance import WorkflowInstance
from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    NotFoundError,
    RunTerminalError,
)
from worldflow.worlds import MemoryWorld, RunStatus, StepStatus, WaitWoken

pytestmark = pytest.mark.anyio

TRIES: dict[str, int] = {}


@workflow(name="tests.wake.napper")
async def napper(key: str) -> str:
    from worldflow import sleep

    await sleep("3d")
    return f"awake {key}"


@workflow(name="tests.wake.listener")
async def listener() -> str:
    from worldflow import wait_for_event

    await wait_for_event("go", timeout="3d")
    return "heard"


@step(max_retries=2, backoff="1h")
async def flaky(key: str) -> str:
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] == 1:
        raise ConnectionError("first attempt fails")
    return f"ok after {TRIES[key]}"


@workflow(name="tests.wake.retrier")
async def retrier(key: str) -> str:
    return await flaky(key)


WORKFLOWS = [napper, listener, retrier]


@pytest.fixture
async def world() -> AsyncIterator[MemoryWorld]:
    world = MemoryWorld()  # the system clock: a 3-day sleep or a 1-hour backoff is real
    yield world
    await world.aclose()


async def _until(check: object, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[operator]  # noqa: ASYNC110 - polls views
            await asyncio.sleep(0.01)


async def test_wake_ends_a_three_day_sleep_now_and_the_log_replays(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(napper, "a")

        async def sleeping() -> bool:
            return bool((await world.list_waits(run_id=run.run_id)).items)

        await _until(sleeping)
        woken = await engine.wake(run.run_id, actor="alice")
        assert len(woken) == 1
        assert await run.result(timeout=WAIT) == "awake a"
        log = await log_of(world, run.run_id)
        kinds = [e.type for e in log]
        assert kinds.index("wait_woken") < kinds.index("wait_completed")
        wake = next(e for e in log if isinstance(e, WaitWoken))
        assert wake.actor == "alice"
        assert wake.correlation_id == woken[0]
        # The log alone replays to the same end (no divergence from the new event).
        view = await world.get_run(run.run_id)
        instance = WorkflowInstance(napper.definition, view, registry=Registry([napper]))
        progress = instance.feed(log)
        assert progress.finished
        assert not progress.stalled
        # Nothing is left to wake: the run is over.
        with pytest.raises(RunTerminalError, match="completed"):
            await engine.wake(run.run_id, woken[0])
        with pytest.raises(EntityConflictError, match="not sleeping"):
            await engine.wake(run.run_id)


async def test_wake_refuses_an_event_wait_an_unknown_wait_and_a_bad_actor(
    world: MemoryWorld,
) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(listener)

        async def waiting() -> bool:
            return bool((await world.list_waits(run_id=run.run_id)).items)

        await _until(waiting)
        (wait,) = (await world.list_waits(run_id=run.run_id)).items
        with pytest.raises(EntityConflictError, match="raise the event"):
            await engine.wake(run.run_id, wait.wait_id)
        with pytest.raises(EntityConflictError, match="not sleeping"):
            await engine.wake(run.run_id)
        with pytest.raises(NotFoundError):
            await engine.wake(run.run_id, "wait_nope")
        with pytest.raises(ValueError, match="actor"):
            await engine.wake(run.run_id, wait.wait_id, actor="a\nb")
        with pytest.raises(InvalidEventError, match="actor"):
            await world.append(
                run.run_id,
                [WaitWoken(run_id=run.run_id, correlation_id=wait.wait_id, actor="x\x00")],
            )
        assert (await world.get_run(run.run_id)).status is RunStatus.RUNNING
        await engine.raise_event(run.run_id, "go")
        assert await run.result(timeout=WAIT) == "heard"


async def test_retry_now_starts_a_backing_off_step_at_once(world: MemoryWorld) -> None:
    TRIES.clear()
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(retrier, "r")

        async def backing_off() -> bool:
            steps = (await world.list_steps(run.run_id)).items
            return bool(steps) and steps[0].retry_after is not None

        await _until(backing_off)
        (stepped,) = (await world.list_steps(run.run_id)).items
        assert stepped.status is StepStatus.PENDING
        await engine.retry_now(run.run_id, "flaky", actor="bob")
        assert await run.result(timeout=WAIT) == "ok after 2"
        kinds = [e.type for e in await log_of(world, run.run_id)]
        assert kinds[kinds.index("step_retrying") + 1 :][:2] == ["step_woken", "step_started"]
        # The run is done: nothing backs off any more.
        with pytest.raises(RunTerminalError, match="completed"):
            await engine.retry_now(run.run_id, stepped.step_id)


async def test_retry_now_while_no_engine_runs_is_kept_by_the_next_one(world: MemoryWorld) -> None:
    # The step_woken lands while the run has no engine: the engine that takes the run next
    # starts the attempt at once (what the log says of the step: woken, no more backoff),
    # not after the recorded hour.
    TRIES.clear()
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(retrier, "w")

        async def backing_off() -> bool:
            steps = (await world.list_steps(run.run_id)).items
            return bool(steps) and steps[0].retry_after is not None

        await _until(backing_off)
    await Client(world).retry_now(run.run_id, "flaky", actor="carol")
    async with running(world, WORKFLOWS) as engine:
        run = await engine.get_run(run.run_id)
        assert await run.result(timeout=WAIT) == "ok after 2"


async def test_retry_now_refuses_a_step_that_is_not_backing_off(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(napper, "b")

        async def sleeping() -> bool:
            return bool((await world.list_waits(run_id=run.run_id)).items)

        await _until(sleeping)
        with pytest.raises(NotFoundError):
            await engine.retry_now(run.run_id, "flaky")
        await engine.cancel(run.run_id)
