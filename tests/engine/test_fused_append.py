"""A step's result and the body's next decisions in one append (the driver's fast path), and
the slow path a concurrent writer forces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.engine.runtime import WAIT, assert_results_once, log_of, running, types_of
from worldflow import now, step, workflow
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

    def __init__(self, *, interfere: int = 0) -> None:
        super().__init__()
        self.appends: list[tuple[list[str], int | None]] = []
        self.interfere = interfere
        self.refused = 0
        self.reads: list[str] = []

    async def get_run(self, run_id: str) -> WorkflowRun:
        self.reads.append(run_id)
        return await super().get_run(run_id)

    async def append(self, run_id: str, events: Sequence[AnyEvent], **options: Any) -> EventResult:
        expected = options.get("expected_seq")
        if expected is not None and self.interfere:
            self.interfere -= 1
            await super().append(run_id, [EventRaised(run_id=run_id, name="noise")])
        self.appends.append(([e.type for e in events], expected))
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
        ["run_created", "run_started"],
        ["step_created", "step_started"],
        ["step_completed", "step_created", "step_started"],
        ["step_completed", "step_created", "step_started"],
        ["step_completed", "run_completed"],
    ]
    assert [expected for _, expected in world.appends][2:] == [4, 7, 10]
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
    assert replays >= 3  # the first drive, then one rebuild from the log per refusal
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
