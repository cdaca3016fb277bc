"""Replay properties on the real engine (memory world, virtual clock), with real crashes.

For a generated program and outside world, the engine runs once undisturbed (the reference),
then again with its process "dying" right after an append chosen anywhere in the reference run
(hypothesis picks the boundary), and a new engine recovering the run from the log:

2. the recovered run reaches the same result and the same log (less the ``step_started`` /
   ``step_retrying`` of attempts the crash cut short), at the same virtual times (events of
   one instant may come in another order);
3. no step is created twice or has two results, in the run or its child runs;
1. the engine's log, replayed from any prefix and then fed the rest, ends where a replay of
   the whole log ends (and does not fail).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import msgspec
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from tests.properties.budget import budget
from tests.properties.checks import check_no_duplicate_results, check_prefixes, replay
from tests.properties.engine_runs import EngineRun, EngineSchedule, run_on_engine
from tests.properties.programs import Child, Program, Step, definition
from tests.properties.strategies import engine_scenarios
from worldflow.worlds import AnyEvent, RunCreated, RunFailed, StepRetrying, StepStarted
from worldflow.worlds._events import EPOCH, stamp

pytestmark = pytest.mark.anyio


def _projection(log: list[AnyEvent]) -> list[tuple[datetime, bytes]]:
    """The log less seq and ids (and the random token seed), less re-run attempts, with the
    events of one virtual instant in a canonical order: work a crash interrupted is redone
    at the same instant, possibly in another order (a recovered child may report before its
    parent's start step is recorded again)."""
    out = []
    for event in log:
        if isinstance(event, (StepStarted, StepRetrying)):
            continue
        if isinstance(event, RunCreated):
            event = msgspec.structs.replace(event, seed="")
        stamped = stamp(event, seq=0, event_id="", created_at=event.created_at)
        out.append((event.created_at, msgspec.json.encode(stamped)))
    return sorted(out)


def _outcome(run: EngineRun) -> bytes:
    ends = [e for e in run.log if e.type in ("run_completed", "run_failed", "run_cancelled")]
    assert len(ends) == 1, ends
    end = ends[0]
    if isinstance(end, RunFailed):
        # The stack trace names files and lines; what failed and why must match.
        end = msgspec.structs.replace(end, error=msgspec.structs.replace(end.error, stack=None))
    return msgspec.json.encode(stamp(end, seq=0, event_id="", created_at=EPOCH))


@budget(120)
@given(scenario=engine_scenarios(), data=st.data())
async def test_a_crash_after_any_append_recovers_to_the_same_run(
    scenario: tuple[Program, EngineSchedule], data: st.DataObject
) -> None:
    program, schedule = scenario
    reference = await run_on_engine(program, schedule)
    crash_after = data.draw(st.integers(1, reference.appends), label="crash_after")
    crashed_schedule = dataclasses.replace(schedule, crash_after=crash_after)
    note(
        "Reproduce with:\n"
        "    import asyncio\n"
        "    from tests.properties.programs import *\n"
        "    from tests.properties.engine_runs import *\n"
        f"    program = {program!r}\n"
        f"    reference = asyncio.run(run_on_engine(program, {schedule!r}))\n"
        f"    crashed = asyncio.run(run_on_engine(program, {crashed_schedule!r}))"
    )
    crashed = await run_on_engine(program, crashed_schedule)
    note(f"reference: {len(reference.log)} events; crashed run: {crashed.notes}")
    assert crashed.crashed
    assert _outcome(crashed) == _outcome(reference)
    assert _projection(crashed.log) == _projection(reference.log)
    for run in (reference, crashed):
        for log in [run.log, *run.children.values()]:
            check_no_duplicate_results(log)
    wf = definition(program)
    instance, whole = replay(wf, crashed.log)
    instance.close()
    assert whole.error is None or "nondeterminism" not in whole.error.lower(), whole.error
    check_prefixes(wf, crashed.log, whole, strict_commands=False)


async def test_a_recovered_child_may_report_before_its_start_step_is_recorded_again() -> None:
    # Found by the --slow budget: the engine dies right after it created the child run; the
    # new engine recovers the child (which ends at once and reports to its parent) and re-runs
    # the parent's start step, at the same virtual instant, in the other order.
    program = Program(body=(Step(node=1), Child(node=2)))
    reference = await run_on_engine(program, EngineSchedule())
    crashed = await run_on_engine(program, EngineSchedule(crash_after=5))
    assert crashed.crashed
    assert _outcome(crashed) == _outcome(reference)
    assert _projection(crashed.log) == _projection(reference.log)
