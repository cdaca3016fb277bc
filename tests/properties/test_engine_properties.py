"""Replay properties on the real engine (virtual clock), with real crashes.

For a generated program and outside world, the engine runs once undisturbed (the reference),
then again with its process "dying" right after an append chosen anywhere in the reference run
(hypothesis picks the boundary), and a new engine recovering the run from the log:

0. both runs end as the oracle (``oracle.py``, an interpreter of the program's meaning that
   knows no engine) says: the same status, output (the trace lists what the body saw, in the
   order it saw it) or error, at the same virtual time;
2. the recovered run reaches the same result and the same log (less the ``step_started`` /
   ``step_retrying`` of attempts the crash cut short), at the same virtual times (events of
   one instant may come in another order);
3. no step is created twice or has two results, in the run or its child runs;
1. the engine's log, replayed from any prefix and then fed the rest, ends where a replay of
   the whole log ends (and does not fail).

The main property runs on the memory world with the engine fed directly; a second one runs
on a file world with fsync, the engines consuming the world's queues. Properties of their own
check retries and backoff (counts, growth, ``retry_after``, kept across a restart) and the
order of what arrives while a run is suspended. Every example is bounded in real seconds
(``run_on_engine(limit=...)``): a hang fails in seconds with the reproduction printed.
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
from tests.properties.oracle import expected_outcome
from tests.properties.programs import Child, Program, Step, definition
from tests.properties.strategies import (
    engine_scenarios,
    held_scenarios,
    note_engine_run,
    retry_scenarios,
)
from worldflow import _serde
from worldflow.testing import DEFAULT_START
from worldflow.worlds import (
    AnyEvent,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunSuspended,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepRetrying,
    StepStarted,
)
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


def _attempt_lost_in_a_suspension(log: list[AnyEvent]) -> bool:
    """Whether a step started before a suspension was started again after its resume."""
    started_before: set[str] = set()
    suspended = resumed = False
    for event in log:
        if isinstance(event, RunSuspended):
            suspended = True
        elif isinstance(event, RunResumed) and suspended:
            resumed = True
        elif isinstance(event, StepStarted):
            if resumed and event.correlation_id in started_before:
                return True
            if not suspended:
                started_before.add(event.correlation_id)
    return False


def _trace(run: EngineRun) -> list[str]:
    [end] = [e for e in run.log if isinstance(e, RunCompleted)]
    output = _serde.decode(end.output)
    assert isinstance(output, dict)
    return [str(entry) for entry in output["trace"]]


def _deliveries(trace: list[str]) -> list[str]:
    """The trace's event and hook deliveries (``n3<e1:...``), in order."""
    return [entry for entry in trace if "<" in entry.split(":", 1)[0]]


def _ended(run: EngineRun) -> tuple[str, object, float]:
    """``(status, output or error class name, virtual seconds from the start)``."""
    [end] = [e for e in run.log if isinstance(e, (RunCompleted, RunFailed, RunCancelled))]
    at = (end.created_at - DEFAULT_START).total_seconds()
    if isinstance(end, RunCompleted):
        return "completed", _serde.decode(end.output), at
    if isinstance(end, RunFailed):
        return "failed", end.error.name, at
    return "cancelled", None, at


def _attempt_times(run: EngineRun) -> dict[str, list[float]]:
    """When each attempt of each finished step started, by step key (the run's and its
    children's steps)."""
    out: dict[str, list[float]] = {}
    for log in [run.log, *run.children.values()]:
        keys: dict[str, str] = {}
        for event in log:
            if isinstance(event, StepCreated) and event.step_name.startswith("props."):
                keys[event.correlation_id] = _serde.decode(event.input)["key"]
        finished = {e.correlation_id for e in log if isinstance(e, (StepCompleted, StepFailed))}
        for event in log:
            corr = event.correlation_id or ""
            if isinstance(event, StepStarted) and corr in keys and corr in finished:
                at = (event.created_at - DEFAULT_START).total_seconds()
                out.setdefault(keys[corr], []).append(round(at, 6))
    return out


def _close(got: dict[str, list[float]], wanted: dict[str, list[float]]) -> bool:
    """The same attempts, each started within 2 us of the oracle's time."""
    if got.keys() != wanted.keys():
        return False
    for key, times in got.items():
        if len(times) != len(wanted[key]):
            return False
        if any(abs(a - b) >= 2e-6 for a, b in zip(times, wanted[key], strict=True)):
            return False
    return True


def check_oracle(
    program: Program,
    schedule: EngineSchedule,
    run: EngineRun,
    *,
    attempts: bool,
    late_by: float | None = 0.0,
) -> None:
    """The run ended as the oracle says, at the time it says or up to ``late_by`` seconds
    later (``None``: at any time), and, with ``attempts``, every finished step's attempts
    started when it says."""
    expected = expected_outcome(program, schedule)
    if expected is None:
        note("oracle: two outside happenings share an instant; the outcome is not defined")
        return
    note(f"oracle: {expected}")
    value = {"completed": expected.output, "failed": expected.error_name}.get(expected.status)
    status, got, at = _ended(run)
    assert (status, got) == (expected.status, value), (
        f"the run ended {status} with {got!r}; the oracle says {expected.status} with {value!r}"
    )
    if late_by is None:
        return
    assert -1e-5 < at - expected.at < late_by + 1e-5, (
        f"the run ended at +{at} s; the oracle says +{expected.at} s"
        + (f" (or up to {late_by} s later)" if late_by else "")
    )
    if attempts and expected.attempts is not None:
        recorded = _attempt_times(run)
        wanted = {
            key: [round(t, 6) for t in times]
            for key, times in expected.attempts.items()
            if key in recorded
        }
        # The virtual clock keeps a float timestamp (~0.24 us resolution at today's epoch):
        # a time it reaches by sums may round to the microsecond next to the oracle's.
        assert _close(recorded, wanted), (
            f"step attempts started at (virtual seconds)\n  run:    {recorded}\n  oracle: {wanted}"
        )


async def _crash_anywhere(
    program: Program,
    schedule: EngineSchedule,
    data: st.DataObject,
    *,
    durable: bool = False,
    consume_queues: bool = False,
) -> None:
    options = {"durable": durable, "consume_queues": consume_queues}
    note_engine_run(program, schedule, **options)
    reference = await run_on_engine(program, schedule, **options)
    # On a file world the virtual clock cannot see the writer thread: under load it may
    # jump while a write is on its way (see engine_runs._holding_time), so the times of a
    # durable run are not compared, only what the run did and returned.
    exact = not durable
    check_oracle(program, schedule, reference, attempts=exact, late_by=0.0 if exact else None)
    if durable or consume_queues:
        # A fixed range, then folded onto the appends made: their number may vary from run
        # to run there (the batching follows the disk), and hypothesis needs the same draws.
        drawn = data.draw(st.integers(1, 1000), label="crash_after")
        crash_after = (drawn - 1) % reference.appends + 1
    else:
        crash_after = data.draw(st.integers(1, reference.appends), label="crash_after")
    note(f"crash_after = {crash_after}")
    crashed_schedule = dataclasses.replace(schedule, crash_after=crash_after)
    note_engine_run(program, crashed_schedule, **options)
    crashed = await run_on_engine(program, crashed_schedule, **options)
    note(f"reference: {len(reference.log)} events; crashed run: {crashed.notes}")
    # (On a file world, or consuming queues, the engine's batching follows the timing of the
    # disk: a run may make fewer appends than the reference and end before the crash point.)
    assert crashed.crashed or durable or consume_queues
    # Consuming queues, the new engine may wait for a message the dead one had leased (the
    # lease is the engine's lease_for, 60 s) and the crashed run then ends later.
    late_by = 60.0 if consume_queues else 0.0
    check_oracle(program, schedule, crashed, attempts=False, late_by=late_by if exact else None)
    if _attempt_lost_in_a_suspension(crashed.log):
        # A suspended run starts no new attempt: a step attempt the crash cut short runs
        # again only at the resume, so the body sees its result after what was held (the
        # undisturbed run finished it during the suspension). Everything else must match:
        # the same entries, the held deliveries in the order they were raised.
        got, want = _trace(crashed), _trace(reference)
        assert sorted(got) == sorted(want), (got, want)
        assert _deliveries(got) == _deliveries(want), (got, want)
        return
    assert _outcome(crashed) == _outcome(reference)
    if exact and not consume_queues:
        assert _projection(crashed.log) == _projection(reference.log)
    for run in (reference, crashed):
        for log in [run.log, *run.children.values()]:
            check_no_duplicate_results(log)
    wf = definition(program)
    instance, whole = replay(wf, crashed.log)
    instance.close()
    assert whole.error is None or "nondeterminism" not in whole.error.lower(), whole.error
    check_prefixes(wf, crashed.log, whole, strict_commands=False)


@pytest.mark.timeout(900)  # a whole budget of examples; each is bounded itself
@budget(120)
@given(scenario=engine_scenarios(), data=st.data())
async def test_a_crash_after_any_append_recovers_to_the_same_run(
    scenario: tuple[Program, EngineSchedule], data: st.DataObject
) -> None:
    program, schedule = scenario
    await _crash_anywhere(program, schedule, data)


@pytest.mark.timeout(900)  # a whole budget of examples; each is bounded itself
@budget(15)
@given(scenario=engine_scenarios(max_leaves=4), data=st.data())
async def test_a_crash_on_a_file_world_with_fsync_recovers_to_the_same_run(
    scenario: tuple[Program, EngineSchedule], data: st.DataObject
) -> None:
    program, schedule = scenario
    await _crash_anywhere(program, schedule, data, durable=True, consume_queues=True)


@pytest.mark.timeout(900)  # a whole budget of examples; each is bounded itself
@budget(40)
@given(scenario=held_scenarios(), data=st.data())
async def test_what_arrives_during_a_suspension_is_delivered_in_order_on_resume(
    scenario: tuple[Program, EngineSchedule], data: st.DataObject
) -> None:
    program, schedule = scenario
    await _crash_anywhere(program, schedule, data)


@pytest.mark.timeout(900)  # a whole budget of examples; each is bounded itself
@budget(40)
@given(scenario=retry_scenarios(), data=st.data())
async def test_retries_count_back_off_and_keep_their_time_across_a_restart(
    scenario: tuple[Program, EngineSchedule], data: st.DataObject
) -> None:
    program, schedule = scenario
    note_engine_run(program, schedule)
    reference = await run_on_engine(program, schedule)
    check_oracle(program, schedule, reference, attempts=True)
    retries = sum(isinstance(e, StepRetrying) for e in reference.log)
    if not retries:
        return
    # die while a step waits for its retry: the new engine must keep the recorded time
    crashed_schedule = dataclasses.replace(
        schedule,
        crash_kind="step_retrying",
        crash_after=(data.draw(st.integers(1, 100), label="crash_after") - 1) % retries + 1,
    )
    note_engine_run(program, crashed_schedule)
    crashed = await run_on_engine(program, crashed_schedule)
    assert crashed.crashed
    check_oracle(program, schedule, crashed, attempts=True)
    assert _projection(crashed.log) == _projection(reference.log)


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
