"""Fork property on generated programs (steps, parallel branches, hooks, events, timers,
child workflows, state) run on the real engine: a fork made from *any* step of the run's log
replays from its own log alone, takes the source's path up to that step, and then calls
exactly that step (with the fork's id for it and the input it was given).

Pure: the fork's first batch (``plan_fork``) is stamped as a world would stamp it and fed to
a fresh instance of the program's workflow; nothing reads the source again.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from hypothesis import given, note

# ^ imported here, not first during an example: pytest rewrites hypothesis' modules on import,
# and CPython 3.11.7's parser fails ("AST constructor recursion depth mismatch") when that
# first import happens deep inside this test's stack (hypothesis in anyio in the engine).
from hypothesis import strategies as st
from hypothesis.internal.conjecture import optimiser  # noqa: F401

from tests.properties.budget import budget
from tests.properties.engine_runs import EngineSchedule, run_on_engine
from tests.properties.programs import FirstOf, Program, SetState, Step, definition
from tests.properties.strategies import engine_scenarios
from worldflow._registry import Registry
from worldflow._replay.child_contract import START_CHILD_STEP
from worldflow._replay.fork import plan_fork
from worldflow._replay.instance import WorkflowInstance
from worldflow.worlds import (
    NULL,
    AnyEvent,
    RunCreated,
    RunStatus,
    StepCompleted,
    StepCreated,
    WorkflowRun,
)
from worldflow.worlds._events import stamp

pytestmark = pytest.mark.anyio

_NEW_INPUT = msgspec.Raw(b'{"forked":true}')


def _fork_log(source: list[AnyEvent], step_id: str, *, new_input: bool) -> list[AnyEvent]:
    first = source[0]
    assert isinstance(first, RunCreated)
    at = source[-1].created_at + timedelta(seconds=5)  # the fork is made later
    plan = plan_fork(
        source,
        step_id=step_id,
        fork_run_id="wrun_the_fork",
        fork_seed="f" * 32,
        ids_at=at,
        step_input=_NEW_INPUT if new_input else None,
    )
    created = RunCreated(
        run_id="wrun_the_fork",
        workflow_name=first.workflow_name,
        input=first.input,
        initial_state=first.initial_state,
        seed="f" * 32,
        forked_from=first.run_id,
        fork=plan.fork,
    )
    batch: list[AnyEvent] = [created, *plan.events]
    return [
        stamp(e, seq=i, event_id=f"evnt_{i:06d}", created_at=at) for i, e in enumerate(batch, 1)
    ]


async def _check_fork(
    program: Program, log_of_source: list[AnyEvent], point: StepCreated, *, new_input: bool
) -> None:
    """Fork ``log_of_source`` from ``point``: the fork replays alone and calls that step."""
    log = _fork_log(log_of_source, point.correlation_id, new_input=new_input)
    wf = definition(program)
    view = WorkflowRun(
        run_id="wrun_the_fork",
        workflow_name=wf.name,
        status=RunStatus.RUNNING,
        input=NULL,
        created_at=log[0].created_at,
        updated_at=log[-1].created_at,
        last_seq=len(log),
    )
    instance = WorkflowInstance(wf, view, registry=Registry([wf]))
    try:
        progress = instance.feed(log)
        assert not progress.stalled, progress.error
        fork = log[0]
        assert isinstance(fork, RunCreated)
        assert fork.fork is not None
        created = [c for c in progress.commands if isinstance(c, StepCreated)]
        at_point = [
            c for c in created if instance._number_of(c.correlation_id) == fork.fork.step_number
        ]
        assert len(at_point) == 1, [c.step_name for c in created]
        assert at_point[0].step_name == point.step_name
        expected = _NEW_INPUT if new_input else point.input
        assert bytes(at_point[0].input) == bytes(expected)
    finally:
        instance.close()


@budget(40)
@given(scenario=engine_scenarios(), data=st.data())
async def test_a_fork_from_any_step_replays_alone_and_calls_that_step(
    scenario: tuple[Program, object], data: st.DataObject
) -> None:
    program, schedule = scenario
    reference = await run_on_engine(program, schedule)  # type: ignore[arg-type]
    steps = [
        e for e in reference.log if isinstance(e, StepCreated) and e.step_name != START_CHILD_STEP
    ]
    if not steps:
        return
    point = data.draw(st.sampled_from(steps), label="fork point")
    new_input = data.draw(st.booleans(), label="new input")
    note(f"program = {program!r}\nfork from {point.correlation_id} ({point.step_name})")
    await _check_fork(program, reference.log, point, new_input=new_input)


@pytest.mark.parametrize("new_input", [False, True])
async def test_a_fork_from_the_loser_of_a_race_calls_it(new_input: bool) -> None:
    """The flake this property found: ``FirstOf(a, a')`` where ``a`` (called first) ends
    after ``a'`` was created and wins. Forked from ``a'``, the fork must call ``a'``: ``a``'s
    later result is not copied (it would decide the race in the fork's first replay, and
    ``a'`` would be cancelled before it was ever called)."""
    program = Program(
        (
            SetState(node=1),
            FirstOf(node=2, branches=((Step(node=3, name="a"),), (Step(node=4, name="a"),))),
        )
    )
    reference = await run_on_engine(program, EngineSchedule(durations=((4, 5.0),)))
    steps = [e for e in reference.log if isinstance(e, StepCreated)]
    assert len(steps) == 2
    loser = steps[1]
    first_result = next(
        e.seq
        for e in reference.log
        if isinstance(e, StepCompleted) and e.correlation_id == steps[0].correlation_id
    )
    assert first_result > loser.seq  # the case: the winner's result came after the point
    await _check_fork(program, reference.log, loser, new_input=new_input)
