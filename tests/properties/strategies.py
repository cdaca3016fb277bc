"""Hypothesis strategies for scenarios: a program and a schedule to run it under."""

from __future__ import annotations

from hypothesis import note
from hypothesis import strategies as st

from tests.properties.programs import Program, Step, programs
from tests.properties.simulation import Schedule, Sim

__all__ = ["Scenario", "note_run", "scenarios", "schedules"]

Scenario = tuple[Program, Schedule]


def _position(length: int) -> st.SearchStrategy[int | None]:
    """An index before which something happens, or ``None`` (most of the time)."""
    return st.integers(0, 3 * length + 2).map(lambda i: i if i < length else None)


@st.composite
def schedules(draw: st.DrawFn, program: Program) -> Schedule:
    """Picks among enabled actions, step failures, outside control, crashes and evictions."""
    steps = sorted({n.node for n in program.nodes() if isinstance(n, Step)})
    failures: tuple[tuple[int, tuple[str, ...]], ...] = ()
    if steps:
        plans = st.tuples(
            st.sampled_from(steps),
            st.lists(st.sampled_from(("retry", "fatal")), min_size=1, max_size=3).map(tuple),
        )
        failures = tuple(draw(st.lists(plans, max_size=3, unique_by=lambda p: p[0])))
    picks = tuple(draw(st.lists(st.integers(0, 40), max_size=40)))
    suspend_at = draw(_position(len(picks)))
    return Schedule(
        picks=picks,
        failures=failures,
        max_retries=draw(st.integers(1, 3)),
        suspend_at=suspend_at,
        resume_at=None if suspend_at is None else draw(_position(len(picks))),
        cancel_at=draw(_position(len(picks))),
        crashes=tuple(sorted(draw(st.lists(st.integers(1, 60), max_size=3, unique=True)))),
        evictions=tuple(sorted(draw(st.lists(st.integers(0, 60), max_size=3, unique=True)))),
    )


@st.composite
def scenarios(draw: st.DrawFn, max_leaves: int = 8) -> Scenario:
    """A program and a schedule for it."""
    program = draw(programs(max_leaves))
    return program, draw(schedules(program))


def note_run(program: Program, schedule: Schedule, *sims: Sim) -> None:
    """Print, on failure, the Python that reproduces the run (and what it did)."""
    note(
        "Reproduce with:\n"
        "    from tests.properties.programs import *\n"
        "    from tests.properties.simulation import *\n"
        f"    program = {program!r}\n"
        f"    schedule = {schedule!r}\n"
        "    reference, disrupted = run_schedule(program, schedule)"
    )
    for sim in sims:
        kind = "disrupted" if sim.disrupt else "reference"
        note(
            f"{kind} run: {len(sim.log)} events, {sim.crashed} crash(es), {sim.evicted} "
            f"eviction(s), {sim.replays} replay(s); actions = {sim.actions!r}"
        )
