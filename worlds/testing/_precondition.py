"""Conformance tests of ``append``'s optimistic precondition (``expected_seq``).

An engine that feeds a step's result to the workflow body *before* it is stored appends the
result together with what the body did next, on the condition that nobody appended in
between; these tests hold every world to that condition and to the times the caller stamped.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    RunNotFoundError,
    RunOwnedElsewhereError,
    SeqConflictError,
)
from worldflow.worlds._events import (
    EventRaised,
    RunCompleted,
    RunCreated,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepStarted,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import World
from worldflow.worlds._records import Fence, RunStatus, StepStatus
from worldflow.worlds.testing._base import SuiteBase, new_run, payload, start_step

__all__ = ["PreconditionConformance"]


def _raised(run_id: str, n: int = 0) -> EventRaised:
    return EventRaised(run_id=run_id, name="e", payload=payload(n))


class PreconditionConformance(SuiteBase):
    """``append(..., expected_seq=N)``: stored only while the run's log is at seq ``N``."""

    async def test_an_append_at_the_expected_seq_is_stored(self, world: World) -> None:
        run = await new_run(world, started=True)
        assert run.last_seq == 2
        result = await world.append(run.run_id, [_raised(run.run_id)], expected_seq=2)
        assert [e.seq for e in result.events] == [3]
        assert result.run.last_seq == 3
        again = await world.append(run.run_id, [_raised(run.run_id, 1)], expected_seq=3)
        assert [e.seq for e in again.events] == [4]

    async def test_a_moved_log_refuses_the_batch_and_stores_nothing(self, world: World) -> None:
        run = await new_run(world, started=True)
        step_id = await start_step(world, run.run_id)  # the log moves to seq 4
        before = (await world.list_events(run.run_id)).items
        completed = StepCompleted(run_id=run.run_id, correlation_id=step_id, result=payload(7))
        finished = RunCompleted(run_id=run.run_id, output=payload(7))
        with pytest.raises(SeqConflictError) as info:
            await world.append(run.run_id, [completed, finished], expected_seq=2)
        assert info.value.last_seq == 4
        assert isinstance(info.value, EntityConflictError)  # a 409, the engine's "re-read"
        assert (await world.list_events(run.run_id)).items == before
        view = await world.get_run(run.run_id)
        assert view.status is RunStatus.RUNNING
        assert view.last_seq == 4
        assert (await world.get_step(run.run_id, step_id)).status is StepStatus.RUNNING
        # ... and at the right seq the same batch goes in.
        result = await world.append(run.run_id, [completed, finished], expected_seq=4)
        assert [e.seq for e in result.events] == [5, 6]
        assert result.run.status is RunStatus.COMPLETED

    async def test_expected_seq_zero_means_a_new_run(self, world: World) -> None:
        run_id = new_id("wrun")
        created = RunCreated(run_id=run_id, workflow_name="wf", input=payload(1))
        result = await world.append(run_id, [created, RunStarted(run_id=run_id)], expected_seq=0)
        assert [e.seq for e in result.events] == [1, 2]
        with pytest.raises(SeqConflictError) as info:
            await world.append(run_id, [_raised(run_id)], expected_seq=0)
        assert info.value.last_seq == 2

    async def test_a_run_that_does_not_exist_is_not_at_a_later_seq(self, world: World) -> None:
        run_id = new_id("wrun")
        created = RunCreated(run_id=run_id, workflow_name="wf", input=payload(1))
        with pytest.raises(SeqConflictError) as info:
            await world.append(run_id, [created], expected_seq=3)
        assert info.value.last_seq == 0
        with pytest.raises(RunNotFoundError):
            await world.get_run(run_id)

    async def test_only_one_of_concurrent_appends_at_one_seq_is_stored(self, world: World) -> None:
        run = await new_run(world, started=True)

        async def one(n: int) -> Any:
            try:
                return await world.append(run.run_id, [_raised(run.run_id, n)], expected_seq=2)
            except SeqConflictError as exc:
                return exc

        outcomes = await asyncio.gather(*(one(n) for n in range(8)))
        refused = [o for o in outcomes if isinstance(o, SeqConflictError)]
        assert len(refused) == 7
        assert all(o.last_seq == 3 for o in refused)
        events = (await world.list_events(run.run_id)).items
        assert [e.seq for e in events] == [1, 2, 3]

    async def test_the_callers_times_are_kept_with_a_precondition(self, world: World) -> None:
        run = await new_run(world, started=True)
        at = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
        stamped = EventRaised(run_id=run.run_id, name="e", payload=payload(1), created_at=at)
        plain = _raised(run.run_id, 2)  # no time of its own: the world's
        result = await world.append(run.run_id, [stamped, plain], expected_seq=2)
        assert result.events[0].created_at == at
        assert result.events[1].created_at != at
        stored = (await world.list_events(run.run_id, after_seq=2)).items
        assert stored[0].created_at == at
        assert stored[0].event_id
        assert stored[0].event_id == result.events[0].event_id

    async def test_a_stamped_batch_gives_the_views_its_first_events_time(
        self, world: World
    ) -> None:
        # An engine that starts a run feeds its body run_created and run_started stamped
        # with its own time, and the ids the body mints rest on the run's created_at: the
        # view must say the time the body saw (as a replay of the stored batch does).
        run_id = new_id("wrun")
        at = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
        step_id = new_id("step")
        result = await world.append(
            run_id,
            [
                RunCreated(run_id=run_id, workflow_name="wf", input=payload(1), created_at=at),
                RunStarted(run_id=run_id, created_at=at),
                StepCreated(run_id=run_id, correlation_id=step_id, step_name="s", input=payload(2)),
                StepStarted(run_id=run_id, correlation_id=step_id),
            ],
            expected_seq=0,
        )
        assert [e.created_at for e in result.events[:2]] == [at, at]
        for view in (result.run, await world.get_run(run_id)):
            assert (view.created_at, view.started_at, view.updated_at) == (at, at, at)
        step = await world.get_step(run_id, step_id)
        assert step.created_at == at
        later = at + timedelta(seconds=2)
        done = StepCompleted(
            run_id=run_id, correlation_id=step_id, result=payload(3), created_at=later
        )
        ended = await world.append(
            run_id, [done, RunCompleted(run_id=run_id, output=payload(3))], expected_seq=4
        )
        assert ended.events[0].created_at == later
        view = await world.get_run(run_id)
        assert (view.created_at, view.updated_at, view.completed_at) == (at, later, later)

    async def test_without_a_precondition_the_world_stamps_the_time(self, world: World) -> None:
        run = await new_run(world, started=True)
        at = datetime(2031, 5, 6, tzinfo=UTC)
        event = EventRaised(run_id=run.run_id, name="e", payload=payload(1), created_at=at)
        result = await world.append(run.run_id, [event])
        assert result.events[0].created_at != at
        assert abs(result.events[0].created_at - datetime.now(UTC)) < timedelta(days=365)

    @pytest.mark.parametrize("bad", [-1, "2", 2.0, True])
    async def test_a_bad_expected_seq_is_refused_naming_it(self, world: World, bad: Any) -> None:
        run = await new_run(world, started=True)
        with pytest.raises(InvalidEventError, match="expected_seq"):
            await world.append(run.run_id, [_raised(run.run_id)], expected_seq=bad)
        assert (await world.get_run(run.run_id)).last_seq == 2

    async def test_a_time_without_a_zone_is_refused_naming_it(self, world: World) -> None:
        run = await new_run(world, started=True)
        naive = datetime(2031, 5, 6, 7, 8, 9)  # no zone: the point of the test
        event = EventRaised(run_id=run.run_id, name="e", payload=payload(1), created_at=naive)
        with pytest.raises(InvalidEventError, match="created_at"):
            await world.append(run.run_id, [event], expected_seq=2)
        assert (await world.get_run(run.run_id)).last_seq == 2

    async def test_the_fence_is_checked_before_the_precondition(self, world: World) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=600.0)
        other = await world.register_engine(workflows=["wf"], ttl=600.0)
        run_id = new_id("wrun")
        created = RunCreated(run_id=run_id, workflow_name="wf", input=payload(1))
        mine = Fence(engine_id=owner.engine_id, epoch=0)
        run = (await world.append(run_id, [created, RunStarted(run_id=run_id)], fence=mine)).run
        assert run.owner_id == owner.engine_id
        step = StepCreated(
            run_id=run_id, correlation_id=new_id("step"), step_name="s", input=payload(1)
        )
        theirs = Fence(engine_id=other.engine_id, epoch=run.owner_epoch)
        with pytest.raises(RunOwnedElsewhereError):
            await world.append(run_id, [step], fence=theirs, expected_seq=0)
        # The owner, at the right seq, with its fence: stored (and the batch may start it).
        ours = Fence(engine_id=owner.engine_id, epoch=run.owner_epoch)
        started = StepStarted(run_id=run_id, correlation_id=step.correlation_id)
        result = await world.append(run_id, [step, started], fence=ours, expected_seq=2)
        assert [e.seq for e in result.events] == [3, 4]
