"""An event fed to the cached instance first and appended with the body's next decisions in
one append (a step's result, a start, a hook's payload), and the slow path a concurrent
writer or a refusal forces."""

from __future__ import annotations

from collections.abc import Sequence
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
    Client,
    EntityConflictError,
    InvalidEventError,
    WorldError,
    create_hook,
    now,
    step,
    workflow,
)
from worldflow._replay.instance import WorkflowInstance
from worldflow.worlds import (
    AnyEvent,
    EventRaised,
    EventResult,
    MemoryWorld,
    StepCompleted,
    WorkflowRun,
)

pytestmark = pytest.mark.anyio


@step
async def inc(x: int) -> int:
    return x + 1


@workflow
async def chain3(x: int) -> list[Any]:
    a = await inc(x)
    t1 = now()
    b = await inc(a)
    t2 = now()
    c = await inc(b)
    return [c, t1.isoformat(), t2.isoformat()]


class CountingWorld(MemoryWorld):
    """Counts appends; optionally slips an ``event_raised`` in before each fused append (as a
    concurrent writer would), so its precondition fails."""

    def __init__(
        self, *, interfere: int = 0, refuse_starts: int = 0, start_error: type = InvalidEventError
    ) -> None:
        super().__init__()
        self.appends: list[tuple[list[str], int | None]] = []
        self.interfere = interfere
        self.refuse_starts = refuse_starts
        self.start_error = start_error
        self.refused = 0
        self.reads: list[str] = []

    async def get_run(self, run_id: str) -> WorkflowRun:
        self.reads.append(run_id)
        return await super().get_run(run_id)

    async def append(self, run_id: str, events: Sequence[AnyEvent], **options: Any) -> EventResult:
        expected = options.get("expected_seq")
        if expected and self.interfere:  # (a run that does not exist yet takes no noise)
            self.interfere -= 1
            await super().append(run_id, [EventRaised(run_id=run_id, name="noise")])
        self.appends.append(([e.type for e in events], expected))
        if expected == 0 and self.refuse_starts:
            self.refuse_starts -= 1
            self.refused += 1
            raise self.start_error("refused for the test")
        try:
            return await super().append(run_id, events, **options)
        except Exception:
            self.refused += 1
            raise


async def test_a_result_goes_out_with_the_next_step_in_one_append() -> None:
    world = CountingWorld()
    async with running(world, [chain3]) as engine:
        run = await engine.start(chain3, 1, run_id="fused-1")
        out = await run.result(timeout=WAIT)
    assert out[0] == 4
    batches = [types for types, _ in world.appends]
    assert batches == [
        ["run_created", "run_started", "step_created", "step_started"],
        ["step_completed", "step_created", "step_started"],
        ["step_completed", "step_created", "step_started"],
        ["step_completed", "run_completed"],
    ]
    assert [expected for _, expected in world.appends] == [0, 4, 7, 10]
    await assert_results_once(world, run.run_id)
    # The body's now() after each step is the stamped time of that result, as stored.
    completed = [e for e in await log_of(world, run.run_id) if isinstance(e, StepCompleted)]
    assert [out[1], out[2]] == [
        completed[0].created_at.isoformat(),
        completed[1].created_at.isoformat(),
    ]
    await world.aclose()


async def test_the_log_replays_to_the_same_outcome() -> None:
    world = CountingWorld()
    async with running(world, [chain3]) as engine:
        run = await engine.start(chain3, 5, run_id="fused-replay")
        live = await run.result(timeout=WAIT)
    # A fresh instance fed the stored log finishes with the same output and times.
    async with running(world, [chain3]) as engine:
        progress_log = await log_of(world, run.run_id)
        view = await world.get_run(run.run_id)
        definition = engine.registry.workflow(view.workflow_name)
        instance = WorkflowInstance(definition, view, registry=engine.registry)
        progress = instance.feed(progress_log)
        instance.close()
    assert progress.commands == []
    assert progress.error is None
    assert (await run.result(timeout=WAIT)) == live
    await world.aclose()


async def test_a_concurrent_writer_forces_the_slow_path() -> None:
    world = CountingWorld(interfere=2)
    async with running(world, [chain3]) as engine:
        run = await engine.start(chain3, 1, run_id="fused-slow")
        out = await run.result(timeout=WAIT)
        replays = engine.driver.replays
    assert out[0] == 4
    assert world.refused == 2  # both interfered appends were refused by their precondition
    assert replays >= 2  # one rebuild from the log per refusal
    await assert_results_once(world, run.run_id)
    types = await types_of(world, run.run_id)
    assert types.count("step_completed") == 3
    assert types.count("event_raised") == 2
    assert types[-1] == "run_completed"
    await world.aclose()


async def test_a_result_waiter_wakes_once_at_the_end() -> None:
    """Run.result() waits for the run's end (wait_for_run(terminal=True)), not for each of
    its appends: it reads the run once, when woken by the end (one read per wake-up, so a
    waiter woken by each append would read several times)."""
    world = CountingWorld()
    async with running(world, [chain3]) as engine:
        run = await engine.start(chain3, 1, run_id="fused-wait")
        world.reads.clear()
        out = await run.result(timeout=WAIT)
        reads = world.reads.count(run.run_id)
        assert len(world.appends) >= 4  # the run's log grew several times meanwhile
    assert out[0] == 4
    assert reads == 1
    await world.aclose()


@workflow
async def one_step(x: int) -> list[Any]:
    t0 = now()
    y = await inc(x)
    return [y, t0.isoformat()]


@workflow
async def parked(x: int) -> int:
    payload: int = await create_hook(token=f"fused-hook:{x}")
    return x + payload


async def test_a_start_goes_out_with_the_bodys_first_decisions() -> None:
    world = CountingWorld()
    async with running(world, [one_step]) as engine:
        run = await engine.start(one_step, 1, run_id="fused-start")
        out = await run.result(timeout=WAIT)
        replays = engine.driver.replays
    assert out[0] == 2
    assert world.appends == [
        (["run_created", "run_started", "step_created", "step_started"], 0),
        (["step_completed", "run_completed"], 4),
    ]
    assert replays == 0  # the instance was made by start(), never rebuilt from the log
    # The run's times are the engine's stamp, which the body saw as its first now(); the
    # step's id was minted from the run's created_at, so the stored log replays.
    events = await log_of(world, run.run_id)
    view = await world.get_run(run.run_id)
    assert events[0].created_at == events[1].created_at == view.created_at == view.started_at
    assert out[1] == events[1].created_at.isoformat()
    async with running(world, [one_step]) as engine:
        definition = engine.registry.workflow(view.workflow_name)
        instance = WorkflowInstance(definition, view, registry=engine.registry)
        progress = instance.feed(events)
        instance.close()
    assert (progress.commands, progress.error) == ([], None)
    await assert_results_once(world, run.run_id)
    await world.aclose()


async def test_a_taken_run_id_is_refused_by_the_fused_start() -> None:
    world = CountingWorld()
    async with running(world, [one_step, parked]) as engine:
        first = await engine.start(one_step, 1, run_id="fused-taken")
        await first.result(timeout=WAIT)
        before = await log_of(world, "fused-taken")
        with pytest.raises(EntityConflictError, match="already exists"):
            await engine.start(one_step, 2, run_id="fused-taken")
        # ... and a run of that id that a client (no engine, no owner yet) created
        client = Client(world)
        other = await client.start(parked, 3, run_id="fused-client")
        with pytest.raises(EntityConflictError, match="already exists"):
            await engine.start(parked, 4, run_id="fused-client")
        await wait_for_type(other, "hook_created")  # the engine took it from the queue
        await engine.resume_hook("fused-hook:3", 10)
        assert await other.result(timeout=WAIT) == 13
    assert await log_of(world, "fused-taken") == before
    assert (await types_of(world, "fused-client")).count("run_created") == 1
    await world.aclose()


async def test_a_refused_start_falls_back_to_the_plain_start() -> None:
    world = CountingWorld(refuse_starts=1)  # a refusal: the world stored nothing
    async with running(world, [one_step]) as engine:
        run = await engine.start(one_step, 1, run_id="fused-fallback")
        assert (await run.result(timeout=WAIT))[0] == 2
    assert world.refused == 1
    assert world.appends[1] == (["run_created", "run_started"], None)
    assert (await types_of(world, run.run_id)).count("run_created") == 1
    await assert_results_once(world, run.run_id)
    await world.aclose()


async def test_a_start_whose_outcome_is_unknown_raises_the_worlds_error() -> None:
    # Not a refusal (a world that did not answer): the batch may have been stored, so the
    # plain start is not tried after it (it could only say "already exists", or store twice)
    world = CountingWorld(refuse_starts=1, start_error=WorldError)
    async with running(world, [one_step]) as engine:
        with pytest.raises(WorldError, match="refused for the test"):
            await engine.start(one_step, 1, run_id="fused-unknown")
        assert engine.driver.progress("fused-unknown") is None  # no instance left behind
    assert len(world.appends) == 1
    await world.aclose()


async def test_a_hook_payload_goes_out_with_what_the_body_does_on_it() -> None:
    world = CountingWorld()
    async with running(world, [parked]) as engine:
        run = await engine.start(parked, 1, run_id="fused-hook")
        await wait_for_type(run, "hook_created")
        world.appends.clear()
        await engine.resume_hook("fused-hook:1", 41)
        assert await run.result(timeout=WAIT) == 42
    assert world.appends == [(["hook_received", "run_completed"], 3)]
    await world.aclose()


async def test_a_hook_payload_a_concurrent_writer_beat_is_sent_the_plain_way() -> None:
    world = CountingWorld()
    async with running(world, [parked]) as engine:
        run = await engine.start(parked, 2, run_id="fused-hook-slow")
        await wait_for_type(run, "hook_created")
        world.interfere = 1
        await engine.resume_hook("fused-hook:2", 40)
        assert await run.result(timeout=WAIT) == 42
    assert world.refused == 1
    types = await types_of(world, run.run_id)
    assert types.count("hook_received") == 1
    assert types[-1] == "run_completed"
    await world.aclose()
