"""Flow control held by the world: concurrency and rate limits of workflows and steps shared
by every engine on a world, keyed limits, delayed starts, priorities.

Each test runs on the memory, file and PostgreSQL worlds on the system clock (the database's
clock judges permits and engine liveness, so a virtual clock cannot stand in for it there);
the periods are fractions of a second. Two engines on one world object stand in for two
processes; killing one cancels its tasks without any cleanup, as SIGKILL would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.engine.runtime import WAIT
from tests.worlds import postgres_db
from worldflow import (
    RESOURCE_ID,
    Client,
    Concurrency,
    Engine,
    RateLimit,
    WorkflowFunction,
    step,
    workflow,
)
from worldflow.testing import VirtualClock
from worldflow.worlds import FileWorld, MemoryWorld, RunStatus, World, open_world

pytestmark = pytest.mark.anyio

POLL = 0.05  # seconds between asks of a refused permit in these tests

# -- what the steps saw ------------------------------------------------------------------------

INSIDE: dict[str, int] = {}
"""Attempts under way now, per group."""
MOST: dict[str, int] = {}
"""The most attempts under way at once, per group."""
ORDER: list[str] = []
"""Labels in the order their step began."""
GATES: dict[str, asyncio.Event] = {}
"""A label named here holds its step until the event is set."""
BEGUN: dict[str, asyncio.Event] = {}
"""Set when the step of a label begins."""
BEGUN_AT: dict[str, datetime] = {}
"""When the step of a label began (the system clock, which every world here judges by)."""


def begun(label: str) -> asyncio.Event:
    return BEGUN.setdefault(label, asyncio.Event())


@pytest.fixture(autouse=True)
def _reset() -> None:
    INSIDE.clear()
    MOST.clear()
    ORDER.clear()
    GATES.clear()
    BEGUN.clear()
    BEGUN_AT.clear()


async def _occupy(group: str, label: str, seconds: float = 0.05) -> str:
    ORDER.append(label)
    BEGUN_AT[label] = datetime.now(UTC)
    begun(label).set()
    INSIDE[group] = INSIDE.get(group, 0) + 1
    MOST[group] = max(MOST.get(group, 0), INSIDE[group])
    try:
        gate = GATES.get(label)
        if gate is not None:
            await gate.wait()
        else:
            await asyncio.sleep(seconds)
    finally:
        INSIDE[group] -= 1
    return label


@step
async def occupy(group: str, label: str) -> str:
    return await _occupy(group, label)


@step(concurrency=1)
async def scarce(label: str) -> str:
    return await _occupy("scarce", label)


@workflow(concurrency=2)
async def two_at_a_time(label: str) -> str:
    return await occupy("two", label)


@workflow(concurrency=1)
async def one_at_a_time(label: str) -> str:
    return await occupy("one", label)


@workflow(concurrency=Concurrency(1, key="customer"))
async def per_customer(customer: str, label: str) -> str:
    return await occupy(customer, label)


@workflow(concurrency=Concurrency(1, key=RESOURCE_ID))
async def per_resource(label: str) -> str:
    return await occupy(f"resource {label[:2]}", label)


@workflow(rate_limit=RateLimit(2, period=0.5))
async def throttled(label: str) -> str:
    return label


@workflow
async def uses_scarce(label: str) -> str:
    return await scarce(label)


@workflow
async def later(label: str) -> str:
    return await occupy("later", label)


FLOWS: list[WorkflowFunction[..., Any]] = [
    two_at_a_time,
    one_at_a_time,
    per_customer,
    per_resource,
    throttled,
    uses_scarce,
    later,
]

# -- worlds that can be reopened ---------------------------------------------------------------


class Place:
    """One world of a kind, and its reopening (a restart of every process on it)."""

    def __init__(self, kind: str, path: Path, url: str | None) -> None:
        self.kind = kind
        self.path = path
        self.url = url
        self._open: list[World] = []

    async def open(self) -> World:
        if self.kind == "memory" and self._open:
            return self._open[0]
        await self.aclose()
        world: World
        if self.kind == "memory":
            world = MemoryWorld()
        elif self.kind == "file":
            world = await FileWorld(self.path, fsync=False).open()
        else:
            assert self.url is not None
            world = await open_world(self.url)
        self._open.append(world)
        return world

    async def aclose(self) -> None:
        for world in self._open:
            await world.aclose()
        self._open.clear()


@pytest.fixture(
    params=[
        "memory",
        "file",
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
        ),
    ]
)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    if request.param == "postgres":
        async with postgres_db.fresh_schema() as url:
            made = Place("postgres", tmp_path, url)
            yield made
            await made.aclose()
        return
    made = Place(request.param, tmp_path / "world", None)
    yield made
    await made.aclose()


def engine(world: World, **options: Any) -> Engine:
    return Engine(world, FLOWS, permit_poll=POLL, **options)


async def kill(victim: Engine) -> None:
    """SIGKILL, as the world sees it: every task stops, nothing is released."""
    victim._closing = True
    tasks = list(victim._tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- concurrency -------------------------------------------------------------------------------


async def test_two_engines_respect_one_workflow_limit(place: Place) -> None:
    world = await place.open()
    async with engine(world) as a, engine(world) as b:
        runs = [await (a if n % 2 else b).start(two_at_a_time, f"r{n}") for n in range(6)]
        results = [await run.result(timeout=WAIT) for run in runs]
        owners = {(await world.get_run(run.run_id)).owner_id for run in runs}
        engines = {a.engine_id, b.engine_id}
    assert results == [f"r{n}" for n in range(6)]
    assert MOST["two"] == 2  # the limit, reached and never passed
    assert owners == engines  # both engines drove runs under it
    assert await world.list_permits(f"run:{two_at_a_time.name}") == []  # all given back


async def test_a_step_limit_is_global_across_engines(place: Place) -> None:
    world = await place.open()
    async with engine(world) as a, engine(world) as b:
        runs = [await (a if n % 2 else b).start(uses_scarce, f"s{n}") for n in range(4)]
        for run in runs:
            await run.result(timeout=WAIT)
    assert MOST["scarce"] == 1
    assert sorted(ORDER) == ["s0", "s1", "s2", "s3"]


async def test_a_killed_engines_permit_lapses_with_its_lease(place: Place) -> None:
    """The second run waits while the victim lives, and after its death until the victim's
    last lease runs out, then gets the permit. Judged on the world's clock (the victim's
    expiry against when the second run's step began), not on how long the test took: the
    survivor is up before the kill, so a slow machine only delays the outcome."""
    world = await place.open()
    GATES["held"] = asyncio.Event()  # never set: the victim dies inside its step
    victim = engine(world, ttl=1.0)
    await victim.__aenter__()
    try:
        first = await victim.start(one_at_a_time, "held")
        await asyncio.wait_for(begun("held").wait(), WAIT)
        # recover=False: the survivor does not take the dead engine's run over, so only the
        # permit's lapse (the victim's TTL) can let the second run in.
        async with engine(world, recover=False) as survivor:
            second = await survivor.start(one_at_a_time, "next")
            await asyncio.sleep(0.2)
            assert await second.status() is RunStatus.PENDING  # the live victim's permit counts
            [lease] = [e for e in await world.list_engines() if e.engine_id == victim.engine_id]
            await kill(victim)  # its last heartbeat is this lease or a later one
            assert await second.result(timeout=WAIT) == "next"
            assert BEGUN_AT["next"] >= lease.expires_at  # the dead engine's permit counted
            assert await first.status() is RunStatus.RUNNING  # nobody finished it
    finally:
        victim._closing = False
        await victim.aclose()


async def test_one_run_per_customer(place: Place) -> None:
    world = await place.open()
    held = GATES["c1-a"] = GATES["c1-b"] = asyncio.Event()  # c1's holder keeps its permit
    async with engine(world) as a, engine(world) as b:
        runs = [
            await a.start(per_customer, "c1", "c1-a"),
            await b.start(per_customer, "c1", "c1-b"),
            await a.start(per_customer, "c2", "c2-a"),
            await b.start(per_customer, "c2", "c2-b"),
            await a.start(per_resource, "r1-a", resource_id="r1"),
            await b.start(per_resource, "r1-b", resource_id="r1"),
        ]
        # Different customers are not held back by each other: both of c2's runs go through
        # while c1's first run still holds c1's permit, and c1's second has not begun.
        await asyncio.wait_for(begun("c2-a").wait(), WAIT)
        await asyncio.wait_for(begun("c2-b").wait(), WAIT)
        assert [label for label in ORDER if label.startswith("c1")] in (["c1-a"], ["c1-b"])
        held.set()
        for run in runs:
            await run.result(timeout=WAIT)
    assert MOST["c1"] == MOST["c2"] == MOST["resource r1"] == 1


# -- rate --------------------------------------------------------------------------------------


async def test_a_rate_limit_spreads_starts_over_its_period(place: Place) -> None:
    world = await place.open()
    async with engine(world) as a, engine(world) as b:
        runs = [await (a if n % 2 else b).start(throttled, f"t{n}") for n in range(5)]
        for run in runs:
            await run.result(timeout=WAIT)
    started = []
    for run in runs:
        at = (await world.get_run(run.run_id)).started_at
        assert at is not None
        started.append(at)
    started.sort()
    # At most 2 starts in any half second (a little slack: the start is stamped after the
    # permit was granted).
    for early, late in zip(started, started[2:], strict=False):
        assert late - early >= timedelta(seconds=0.4), started


# -- delayed start -----------------------------------------------------------------------------


async def test_a_delayed_start_survives_a_restart(place: Place) -> None:
    world = await place.open()
    async with engine(world) as first:
        run = await first.start(later, "soon", delay=0.8)
        view = await world.get_run(run.run_id)
        assert view.status is RunStatus.PENDING
        assert view.start_at is not None
        assert view.start_at - view.created_at >= timedelta(seconds=0.7)
        info = await run.info()
        assert info.start_at == view.start_at
    world = await place.open()  # every process restarts
    async with engine(world):
        client = Client(world)
        again = await client.get_run(run.run_id)
        assert await again.result(timeout=WAIT) == "soon"
        view = await world.get_run(run.run_id)
    assert view.started_at is not None
    assert view.start_at is not None
    assert view.started_at >= view.start_at


@pytest.mark.parametrize("kind", ["memory", "file"])
async def test_a_delay_of_an_hour_on_a_virtual_clock(kind: str, tmp_path: Path) -> None:
    clock = VirtualClock(idle_delay=0.05 if kind == "file" else 0.0)
    world: MemoryWorld = (
        MemoryWorld(clock=clock)
        if kind == "memory"
        else await FileWorld(tmp_path / "w", fsync=False, clock=clock).open()
    )
    try:
        async with Engine(world, [later]) as first:
            run = await first.start(later, "in an hour", delay="1h")
        # Virtual time only jumps to the next sleeper (the engine's queue waits come first),
        # so the engine stopped long before its hour was up: the run has not started.
        assert (await world.get_run(run.run_id)).status is RunStatus.PENDING
        if kind == "file":  # a restart: the pending run and its start_at come from the log
            await world.aclose()
            world = await FileWorld(tmp_path / "w", fsync=False, clock=clock).open()
        async with Engine(world, [later]) as second:
            run = await second.get_run(run.run_id)
            assert await run.result(timeout=7200) == "in an hour"
        view = await world.get_run(run.run_id)
        assert view.started_at is not None
        assert view.started_at - view.created_at >= timedelta(hours=1)
    finally:
        await world.aclose()


# -- priority ----------------------------------------------------------------------------------


async def test_waiting_runs_go_by_priority(place: Place) -> None:
    world = await place.open()
    GATES["first"] = asyncio.Event()
    async with engine(world) as a, engine(world) as b:
        first = await a.start(one_at_a_time, "first")
        await asyncio.wait_for(begun("first").wait(), WAIT)
        waiting = [("p0", 0), ("p5a", 5), ("low", -1), ("p10", 10), ("p5b", 5)]
        runs = [
            await (a if n % 2 else b).start(one_at_a_time, label, priority=priority)
            for n, (label, priority) in enumerate(waiting)
        ]
        key = f"run:{one_at_a_time.name}"
        for _ in range(500):  # until every waiter has asked once and stands in line
            line = await world.list_permits(key)
            if len(line) == 6:
                break
            await asyncio.sleep(0.01)
        assert [p.granted for p in line] == [True] + [False] * 5
        assert [p.priority for p in line[1:]] == [10, 5, 5, 0, -1]
        assert (await world.get_run(runs[3].run_id)).priority == 10
        GATES["first"].set()
        await first.result(timeout=WAIT)
        for run in runs:
            await run.result(timeout=WAIT)
    assert ORDER == ["first", "p10", "p5a", "p5b", "p0", "low"]


# -- options -----------------------------------------------------------------------------------


def test_a_key_must_name_a_parameter() -> None:
    with pytest.raises(ValueError, match="names no parameter"):

        @workflow(concurrency=Concurrency(1, key="nope"))
        async def bad(customer: str) -> None: ...

    with pytest.raises(ValueError, match="limit must be an int >= 1"):
        Concurrency(0)
    with pytest.raises(ValueError, match="period must be positive"):
        RateLimit(1, period=0)
    with pytest.raises(TypeError, match="rate_limit"):
        step(rate_limit=5)  # type: ignore[call-overload]


async def test_start_refuses_a_bad_delay_or_priority() -> None:
    world = MemoryWorld()
    client = Client(world)
    with pytest.raises(ValueError, match="delay"):
        await client.start(later, "x", delay=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="priority"):
        await client.start(later, "x", priority="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32-bit"):
        await client.start(later, "x", priority=2**31)
    assert (await world.list_runs()).items == []
