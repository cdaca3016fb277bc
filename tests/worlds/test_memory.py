"""What is particular to the memory world: its cost model, its clock, closing and waking."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TypeVar

import pytest

from worldflow import (
    ConfigurationError,
    LeaseLostError,
    RunNotFoundError,
    StreamNotFoundError,
    WorldError,
)
from worldflow.worlds import (
    NULL,
    EventRaised,
    HookCreated,
    MemoryWorld,
    QueueMessage,
    RunCompleted,
    RunCreated,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepStarted,
    WaitCreated,
    World,
    _wakeups,
    new_id,
)
from worldflow.worlds._memory import log as log_module
from worldflow.worlds._memory import queue as queue_module
from worldflow.worlds._memory import reads as reads_module
from worldflow.worlds._memory import world as world_module

pytestmark = pytest.mark.anyio

T = TypeVar("T")

_WORLD_FILES = {
    m.__file__ for m in (world_module, reads_module, log_module, queue_module, _wakeups)
}


class ManualClock:
    """A clock that moves only when told to; ``sleep`` waits for it to move far enough."""

    def __init__(self) -> None:
        self.time = datetime(2030, 1, 1, tzinfo=UTC)
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self.time

    async def sleep(self, seconds: float) -> None:
        until = self.time + timedelta(seconds=seconds)
        async with self._moved:
            await self._moved.wait_for(lambda: self.time >= until)

    async def advance(self, seconds: float) -> None:
        await _settle()  # let tasks started just now read the time before it moves
        self.time += timedelta(seconds=seconds)
        async with self._moved:
            self._moved.notify_all()
        await _settle()


async def _settle() -> None:
    """Let ready tasks run until they block (a few loop turns; no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_memory_world_is_a_world() -> None:
    world: World = MemoryWorld()
    assert isinstance(world, World)


async def test_from_url() -> None:
    world = await MemoryWorld.from_url("memory://")
    assert isinstance(world, MemoryWorld)
    await world.aclose()
    with pytest.raises(ConfigurationError, match="memory://"):
        await MemoryWorld.from_url("memory://somewhere/else")


# -- cost does not grow with the size of the world ------------------------------------------


async def _lines_run(awaitable: Awaitable[T]) -> tuple[int, T]:
    """Await ``awaitable`` counting the lines executed inside the memory world's modules.

    A loop over runs, hooks or messages would execute its body once per item, so the count
    is an operation counter that does not depend on the machine's speed.
    """
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in _WORLD_FILES else None

    sys.settrace(tracer)
    try:
        result = await awaitable
    finally:
        sys.settrace(None)
    return count, result


async def _populate(world: MemoryWorld, runs: int) -> None:
    for n in range(runs):
        r = f"filler-{n}"
        await world.append(
            r,
            [
                RunCreated(run_id=r, workflow_name="filler", input=NULL),
                RunStarted(run_id=r),
                StepCreated(run_id=r, correlation_id="s", step_name="s", input=NULL),
                HookCreated(run_id=r, correlation_id="h", token=f"filler-token-{n}"),
                WaitCreated(run_id=r, correlation_id="w"),
            ],
        )
        await world.write_stream(r, "out", [b"x"])
        await world.enqueue("runs", QueueMessage(kind="run", run_id=r), delay=3600)
        await world.enqueue("steps", QueueMessage(kind="step", run_id=r, step_id="s"), delay=3600)


async def _hot_path_costs(world: MemoryWorld) -> dict[str, int]:
    """Lines executed by each hot-path operation on a fresh run of ``world``."""
    r = new_id("wrun")
    costs: dict[str, int] = {}
    operations: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("create", lambda: world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])),
        ("start", lambda: world.append(r, [RunStarted(run_id=r)])),
        (
            "batch",
            lambda: world.append(
                r,
                [
                    StepCreated(run_id=r, correlation_id="s1", step_name="s", input=NULL),
                    StepStarted(run_id=r, correlation_id="s1"),
                    HookCreated(run_id=r, correlation_id="h1", token=f"tok-{r}"),
                    WaitCreated(run_id=r, correlation_id="w1"),
                ],
            ),
        ),
        (
            "token_conflict",
            lambda: world.append(
                r, [HookCreated(run_id=r, correlation_id="h2", token="filler-token-0")]
            ),
        ),
        ("event", lambda: world.append(r, [EventRaised(run_id=r, name="e")])),
        ("get_run", lambda: world.get_run(r)),
        ("get_step", lambda: world.get_step(r, "s1")),
        ("list_events", lambda: world.list_events(r, after_seq=3, limit=2)),
        ("hook_by_token", lambda: world.get_hook_by_token(f"tok-{r}")),
        ("wait_for_run", lambda: world.wait_for_run(r, after_seq=1, timeout=0)),
        (
            "enqueue",
            lambda: world.enqueue("steps", QueueMessage(kind="step", run_id=r, step_id="s")),
        ),
        ("lease", lambda: world.lease("steps", lease_for=30)),
        ("write_stream", lambda: world.write_stream(r, "out", [b"a"])),
        (
            "complete",
            lambda: world.append(
                r,
                [
                    StepCompleted(run_id=r, correlation_id="s1", result=NULL),
                    RunCompleted(run_id=r, output=NULL),
                ],
            ),
        ),
        ("purge", lambda: world.purge(r)),
    ]
    for name, operation in operations:
        costs[name], result = await _lines_run(operation())
        if name == "lease":
            [lease] = result
            costs["ack"], _ = await _lines_run(world.ack(lease))
    return costs


async def test_hot_paths_cost_the_same_in_a_big_world() -> None:
    small, big = MemoryWorld(), MemoryWorld()
    await _populate(small, 5)
    await _populate(big, 2000)
    small_costs = await _hot_path_costs(small)
    big_costs = await _hot_path_costs(big)
    assert big_costs == small_costs
    assert all(cost > 0 for cost in small_costs.values())  # the counter does count


class _NoScan(dict[Any, Any]):
    """A table that fails the test if anything walks it."""

    def __iter__(self) -> Any:
        raise AssertionError("a hot path iterated a world-wide table")

    def keys(self) -> Any:
        raise AssertionError("a hot path iterated a world-wide table")

    def values(self) -> Any:
        raise AssertionError("a hot path iterated a world-wide table")

    def items(self) -> Any:
        raise AssertionError("a hot path iterated a world-wide table")


async def test_hot_paths_never_walk_the_world_wide_tables() -> None:
    world = MemoryWorld()
    await _populate(world, 50)
    log = world._log
    log.runs = _NoScan(log.runs)
    log.tokens = _NoScan(log.tokens)
    costs = await _hot_path_costs(world)
    assert set(costs) >= {"batch", "lease", "purge", "hook_by_token"}


# -- the clock --------------------------------------------------------------------------------


async def test_time_comes_from_the_clock() -> None:
    clock = ManualClock()
    world = MemoryWorld(clock)
    assert world.clock is clock
    r = new_id("wrun")
    result = await world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])
    assert result.run.created_at == clock.time
    assert result.events[0].created_at == clock.time
    await clock.advance(90)
    started = await world.append(r, [RunStarted(run_id=r)])
    assert started.run.started_at == clock.time
    assert started.run.updated_at == clock.time


async def test_delays_and_leases_run_on_the_clock() -> None:
    clock = ManualClock()
    world = MemoryWorld(clock)
    await world.enqueue("q", QueueMessage(kind="run", run_id="r"), delay=600)
    waiter = asyncio.ensure_future(world.lease("q", lease_for=60, wait=3600))
    await clock.advance(599)
    assert not waiter.done()  # ten minutes of virtual time, not of real time
    await clock.advance(1)
    async with asyncio.timeout(5):
        [lease] = await waiter
    assert lease.expires_at == clock.time + timedelta(seconds=60)
    await clock.advance(60)
    with pytest.raises(LeaseLostError):
        await world.ack(lease)
    [again] = await world.lease("q", lease_for=60)
    assert again.attempt == 2


async def test_notification_timeouts_run_on_the_clock() -> None:
    clock = ManualClock()
    world = MemoryWorld(clock)
    r = new_id("wrun")
    await world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])
    waiter = asyncio.ensure_future(world.wait_for_run(r, after_seq=1, timeout=30))
    world_waiter = asyncio.ensure_future(world.wait_for_world(after=1, timeout=30))
    await clock.advance(29)
    assert not waiter.done()
    assert not world_waiter.done()
    await clock.advance(1)
    async with asyncio.timeout(5):
        assert await waiter == 1
        assert await world_waiter == 1


# -- waking and closing ----------------------------------------------------------------------


async def test_close_wakes_every_waiter_with_an_error() -> None:
    world = MemoryWorld()
    r = new_id("wrun")
    await world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])
    waiters = [
        asyncio.ensure_future(world.wait_for_run(r, after_seq=1)),
        asyncio.ensure_future(world.wait_for_world(after=1)),
        asyncio.ensure_future(world.lease("q", lease_for=30, wait=3600)),
        asyncio.ensure_future(_first_chunk(world, r)),
    ]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    await world.aclose()
    async with asyncio.timeout(5):
        results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(x, WorldError) for x in results), results
    with pytest.raises(WorldError, match="closed"):
        await world.enqueue("q", QueueMessage(kind="run", run_id=r))


async def _first_chunk(world: MemoryWorld, run_id: str) -> Any:
    async for chunk in world.read_stream(run_id, "never-written"):
        return chunk
    return None


async def test_purge_wakes_waiters_of_the_run() -> None:
    world = MemoryWorld()
    r = new_id("wrun")
    await world.append(
        r,
        [RunCreated(run_id=r, workflow_name="w", input=NULL), RunCompleted(run_id=r, output=NULL)],
    )
    waiter = asyncio.ensure_future(world.wait_for_run(r, after_seq=2))
    await asyncio.sleep(0)
    await world.purge(r)
    async with asyncio.timeout(5):
        with pytest.raises(RunNotFoundError):
            await waiter


async def test_a_followed_stream_that_never_comes_ends_with_the_run() -> None:
    world = MemoryWorld()
    r = new_id("wrun")
    await world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])
    reader = asyncio.ensure_future(_first_chunk(world, r))
    await asyncio.sleep(0)
    assert not reader.done()
    await world.append(r, [RunCompleted(run_id=r, output=NULL)])
    async with asyncio.timeout(5):
        with pytest.raises(StreamNotFoundError):
            await reader


async def test_idle_notifications_cost_nothing_to_writers() -> None:
    """Appending with nobody waiting allocates no wake-up objects."""
    world = MemoryWorld()
    r = new_id("wrun")
    await world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])
    for n in range(10):
        await world.append(r, [EventRaised(run_id=r, name=str(n))])
    state = world._log.runs[r]
    assert state.changed._event is None
    assert world._world_changed._event is None


def test_a_world_outlives_its_event_loop() -> None:
    world = MemoryWorld()
    r = new_id("wrun")

    async def abandoned_wait() -> None:
        await world.append(r, [RunCreated(run_id=r, workflow_name="w", input=NULL)])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await world.wait_for_run(r, after_seq=1)  # leaves a waiter on this loop

    async def wait_again() -> int:
        waiter = asyncio.ensure_future(world.wait_for_run(r, after_seq=1))
        await asyncio.sleep(0)
        await world.append(r, [RunStarted(run_id=r)])
        async with asyncio.timeout(5):
            return await waiter

    asyncio.run(abandoned_wait())
    assert asyncio.run(wait_again()) == 2
