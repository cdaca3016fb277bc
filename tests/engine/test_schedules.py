"""Cron schedules: one run per tick (also with two engines), catch-up and overlap policies,
pause / resume / trigger / update / delete, hand-over to a new generation, time zones; on the
memory and the file worlds, on a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from worldflow import (
    CronSchedule,
    Engine,
    EntityConflictError,
    ScheduleNotFoundError,
    create_hook,
    step,
    workflow,
)
from worldflow._cron import due_ticks, next_tick, pick_ticks
from worldflow.testing import VirtualClock
from worldflow.worlds import FileWorld, MemoryWorld, RunStatus, World

pytestmark = pytest.mark.anyio

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = 3600.0
done: list[str] = []


@step
async def record(label: str) -> str:
    done.append(label)
    return label


@workflow(name="report")
async def report(label: str) -> str:
    return await record(label)


@workflow(name="slow-report")
async def slow_report() -> Any:
    return await create_hook()  # never resumed: the run keeps going


@workflow(name="nightly", schedule="30 2 * * *", timezone="Europe/Berlin")
async def nightly() -> str:
    return await record("nightly")


WorldMaker = Callable[[VirtualClock], MemoryWorld | FileWorld]


@pytest.fixture(params=["memory", "file"])
def make_world(request: pytest.FixtureRequest, tmp_path: Path) -> WorldMaker:
    done.clear()
    if request.param == "memory":
        shared: dict[str, MemoryWorld] = {}

        def memory(clock: VirtualClock) -> MemoryWorld:
            return shared.setdefault("w", MemoryWorld(clock=clock))

        return memory

    def file(clock: VirtualClock) -> FileWorld:
        return FileWorld(tmp_path / "world", fsync=False, clock=clock)

    return file


@asynccontextmanager
async def engine_on(world: World, *workflows: Any) -> AsyncIterator[Engine]:
    async with Engine(world, workflows=list(workflows), consume_queues=False) as engine:
        yield engine


async def _runs_of(world: World, schedule: str) -> list[Any]:
    page = await world.list_runs(metadata={"worldflow.schedule": schedule}, order="asc")
    return [r for r in page.items if r.workflow_name != "worldflow.schedule"]


async def _quiet(world: World, quiet: float = 0.15, limit: float = 30.0) -> None:
    """Wait (in real time) until nothing has been appended to ``world`` for ``quiet``
    seconds: a file world's writes are real I/O the virtual clock does not wait for."""
    loop = asyncio.get_running_loop()
    seen = await world.wait_for_world(after=0, timeout=0)
    deadline = loop.time() + limit
    while loop.time() < deadline:
        try:
            seen = await asyncio.wait_for(world.wait_for_world(after=seen), quiet)
        except TimeoutError:
            return
    raise AssertionError(f"the world did not come to rest within {limit} s")


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> None:
    """Wait (in real time) until ``check()`` holds: under load the engine may still be on
    its way after the world was quiet for a moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {limit} s: {what}")
        await asyncio.sleep(0.05)


async def _rest(clock: VirtualClock, world: World) -> None:
    await clock.until_idle()
    await _quiet(world)


async def _settle(
    clock: VirtualClock, engine: Engine, seconds: float, step: float = HOUR / 2
) -> None:
    """Move the clock on by ``seconds``, in steps; after each, wait until every schedule has
    handled its due ticks (its next tick is in the future again) and the world is quiet."""
    world = engine.world
    await _quiet(world)
    left = seconds
    while left > 0:
        await clock.advance(min(step, left))
        left -= step
        await clock.until_idle()

        async def caught_up() -> bool:
            infos = await engine.schedules.list()
            return all(i.paused or (i.next_tick or START) > clock.now() for i in infos)

        await _eventually(caught_up, "every schedule handled its due ticks")
        await _quiet(world)


async def test_one_run_per_tick(make_world: WorldMaker) -> None:
    clock = VirtualClock(START, auto_advance=False)
    world = make_world(clock)
    async with world, engine_on(world, report) as engine:
        info = await engine.schedules.add("hourly", report, "0 * * * *", "r")
        assert info.next_tick == START + timedelta(hours=1)
        await _rest(clock, world)
        await _settle(clock, engine, 3 * HOUR + 60)
        runs = await _runs_of(world, "hourly")
        assert [r.run_id for r in runs] == [f"hourly@2024-01-01T0{h}:00:00Z" for h in (1, 2, 3)]
        assert all(r.status is RunStatus.COMPLETED for r in runs)
        info = await engine.schedules.get("hourly")
        assert (info.started, info.skipped) == (3, 0)
        assert info.next_tick == START + timedelta(hours=4)
        assert done == ["r", "r", "r"]
        with pytest.raises(EntityConflictError):
            await engine.schedules.add("hourly", report, "0 * * * *", "r")


async def test_two_engines_declaring_a_schedule_start_one_run_per_tick() -> None:
    done.clear()
    clock = VirtualClock(START, auto_advance=False)
    world = MemoryWorld(clock=clock)
    async with engine_on(world, nightly) as first, engine_on(world, nightly) as second:
        assert [s.name for s in await first.schedules.list()] == ["nightly"]
        await _rest(clock, world)
        await _settle(clock, first, 3 * 24 * HOUR)
        runs = await _runs_of(world, "nightly")
        # 02:30 in Berlin is 01:30 UTC in winter.
        assert [r.run_id for r in runs] == [f"nightly@2024-01-0{d}T01:30:00Z" for d in (1, 2, 3)]
        assert done == ["nightly"] * 3
        assert len(await second.schedules.list()) == 1


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("skip", []), ("once", ["05"]), ("backfill", ["01", "02", "03", "04", "05"])],
)
async def test_missed_ticks_follow_the_catch_up_policy(
    make_world: WorldMaker, catch_up: str, expected: list[str]
) -> None:
    clock = VirtualClock(START, auto_advance=False)
    world = make_world(clock)
    async with world:
        async with engine_on(world, report) as engine:
            await engine.schedules.add("h", report, "0 * * * *", "x", catch_up=catch_up)
            await _rest(clock, world)
        await clock.advance(5 * HOUR + 120)  # no engine runs: five ticks go by
        async with engine_on(world, report) as engine:
            await _rest(clock, world)
            await _settle(clock, engine, 1)

            async def handled() -> bool:
                info = await engine.schedules.get("h")
                return info.last_tick == START + timedelta(hours=5) and info.started == len(
                    expected
                )

            await _eventually(handled, "the missed ticks are handled")
            runs = await _runs_of(world, "h")
            assert [r.run_id[13:15] for r in runs] == expected
            info = await engine.schedules.get("h")
            assert (info.started, info.skipped) == (len(expected), 5 - len(expected))
            assert info.last_tick == START + timedelta(hours=5)
            assert info.next_tick == START + timedelta(hours=6)


@pytest.mark.parametrize(("overlap", "started"), [("skip", 1), ("allow", 3)])
async def test_a_tick_while_the_last_run_goes_follows_the_overlap_policy(
    overlap: str, started: int
) -> None:
    clock = VirtualClock(START, auto_advance=False)
    world = MemoryWorld(clock=clock)
    async with engine_on(world, slow_report) as engine:
        await engine.schedules.add("s", slow_report, "0 * * * *", overlap=overlap)
        await _rest(clock, world)
        await _settle(clock, engine, 3 * HOUR + 60)
        info = await engine.schedules.get("s")
        assert (info.started, info.skipped) == (started, 3 - started)
        assert len(await _runs_of(world, "s")) == started


async def test_pause_resume_trigger_update_delete(make_world: WorldMaker) -> None:
    clock = VirtualClock(START, auto_advance=False)
    world = make_world(clock)
    async with world, engine_on(world, report) as engine:
        schedules = engine.schedules
        await schedules.add("p", report, "0 * * * *", "p", catch_up="skip")
        await _rest(clock, world)
        await schedules.pause("p")
        assert (await schedules.get("p")).paused
        await _settle(clock, engine, 2 * HOUR + 120)  # the 02:00 tick is 120 s late: past grace
        assert await _runs_of(world, "p") == []
        await schedules.resume("p")
        await _rest(clock, world)
        assert not (await schedules.get("p")).paused
        assert await _runs_of(world, "p") == []  # "skip": ticks missed while paused are dropped

        await schedules.trigger("p")
        await _rest(clock, world)
        await _settle(clock, engine, 1)
        runs = await _runs_of(world, "p")
        assert len(runs) == 1
        assert "@manual-" in runs[0].run_id

        await schedules.update("p", cron="*/30 * * * *")
        await _rest(clock, world)
        await _settle(clock, engine, HOUR)
        info = await schedules.get("p")
        assert info.cron == "*/30 * * * *"
        assert info.started == 3  # the manual run and two half-hour ticks

        await schedules.delete("p")
        with pytest.raises(ScheduleNotFoundError):
            await schedules.get("p")
        assert await schedules.list() == []
        again = await schedules.add("p", report, "0 * * * *", "again")
        assert again.run_id == "schedule:p:0"  # delete purged the old log
        assert (again.started, again.paused) == (0, False)


async def test_a_schedule_hands_over_to_a_new_generation(make_world: WorldMaker) -> None:
    clock = VirtualClock(START, auto_advance=False)
    world = make_world(clock)
    async with world, engine_on(world, report) as engine:
        await engine.schedules.add("g", report, "0 * * * *", "g", ticks_per_run=2)
        await _rest(clock, world)
        for _ in range(5):
            await _settle(clock, engine, HOUR)
        info = await engine.schedules.get("g")
        assert info.run_id == "schedule:g:2"
        assert info.started == 5
        old = await world.get_run("schedule:g:0")
        assert old.status is RunStatus.COMPLETED
        assert len(await _runs_of(world, "g")) == 5


async def test_bad_schedules_are_refused_before_anything_is_stored() -> None:
    with pytest.raises(ValueError, match="not a cron expression"):
        CronSchedule(cron="every day")
    with pytest.raises(ValueError, match="not a known time zone"):
        CronSchedule(cron="0 9 * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="catch_up"):
        CronSchedule(cron="0 9 * * *", catch_up="all")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule"):
        workflow(schedule=5)  # type: ignore[call-overload]
    clock = VirtualClock(START, auto_advance=False)
    world = MemoryWorld(clock=clock)
    async with engine_on(world, report) as engine:
        with pytest.raises(ValueError, match="cron"):
            await engine.schedules.add("bad", report, "61 * * * *")
        await engine.schedules.add("ok", report, "0 * * * *", "x")
        with pytest.raises(ValueError, match="cannot change"):
            await engine.schedules.update("ok", color="red")
        with pytest.raises(ScheduleNotFoundError):
            await engine.schedules.pause("missing")
        assert [s.name for s in await engine.schedules.list()] == ["ok"]


def test_ticks_follow_the_zone_across_daylight_saving_time() -> None:
    berlin = CronSchedule(cron="0 9 * * *", timezone="Europe/Berlin")
    before = next_tick(berlin, datetime(2024, 3, 30, 12, tzinfo=UTC))
    after = next_tick(berlin, before)
    assert before == datetime(2024, 3, 31, 7, tzinfo=UTC)  # 09:00 CEST (summer time)
    assert after == datetime(2024, 4, 1, 7, tzinfo=UTC)
    winter = next_tick(berlin, datetime(2024, 1, 1, tzinfo=UTC))
    assert winter == datetime(2024, 1, 1, 8, tzinfo=UTC)  # 09:00 CET


def test_due_ticks_walk_back_from_now_so_a_long_downtime_is_cheap() -> None:
    every_minute = CronSchedule(cron="* * * * *", catch_up="backfill", max_backfill=3)
    year = datetime(2025, 1, 1, tzinfo=UTC)
    due = due_ticks(every_minute, START, year, limit=4)
    assert due == [year - timedelta(minutes=m) for m in (3, 2, 1, 0)]
    assert pick_ticks(every_minute, due, year) == due[-3:]
    late = CronSchedule(cron="* * * * *", catch_up="skip", grace=30)
    assert pick_ticks(late, due, year + timedelta(seconds=10)) == [year]
    assert pick_ticks(late, due, year + timedelta(seconds=40)) == []
