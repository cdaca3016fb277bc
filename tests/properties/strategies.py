"""Hypothesis strategies for scenarios: a program and a schedule to run it under."""

from __future__ import annotations

from hypothesis import note
from hypothesis import strategies as st

from tests.properties.engine_runs import EngineSchedule
from tests.properties.programs import (
    EVENT_NAMES,
    FLAKY,
    Block,
    Child,
    Event,
    Gather,
    Hook,
    HookTimeout,
    HookVsSleep,
    Node,
    Program,
    Sleep,
    Step,
    programs,
)
from tests.properties.simulation import Schedule, Sim

__all__ = [
    "Scenario",
    "engine_scenarios",
    "engine_schedules",
    "held_scenarios",
    "note_engine_run",
    "note_run",
    "retry_scenarios",
    "scenarios",
    "schedules",
]

Scenario = tuple[Program, Schedule]


def _position(length: int) -> st.SearchStrategy[int | None]:
    """An index before which something happens now and then, else ``None``."""
    return st.tuples(
        st.sampled_from((False, False, False, True)), st.integers(0, max(0, length - 1))
    ).map(lambda p: p[1] if p[0] and length else None)


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


@st.composite
def engine_schedules(draw: st.DrawFn, program: Program) -> EngineSchedule:
    """Step durations and failures, hook delays, events, suspension, cancellation, evictions
    (the crash point is drawn once the reference run has counted its appends)."""
    nodes = program.nodes()
    steps = sorted({n.node for n in nodes if isinstance(n, (Step, Child))})
    hooks = sorted({n.node for n in nodes if isinstance(n, (Hook, HookVsSleep, HookTimeout))})
    seconds = st.integers(0, 300).map(float)
    durations: tuple[tuple[int, float], ...] = ()
    failures: tuple[tuple[int, tuple[str, ...]], ...] = ()
    delays: tuple[tuple[int, float], ...] = ()
    if steps:
        durations = tuple(
            draw(st.lists(st.tuples(st.sampled_from(steps), seconds), unique_by=lambda d: d[0]))
        )
        plans = st.tuples(
            st.sampled_from(steps),
            st.lists(st.sampled_from(("retry", "fatal")), min_size=1, max_size=2).map(tuple),
        )
        failures = tuple(draw(st.lists(plans, max_size=2, unique_by=lambda p: p[0])))
    if hooks:
        delays = tuple(
            draw(st.lists(st.tuples(st.sampled_from(hooks), seconds), unique_by=lambda d: d[0]))
        )
    events = st.tuples(st.sampled_from(EVENT_NAMES), st.integers(0, 600).map(float))
    # A time in the first 900 s now and then, else None (hypothesis favours the first
    # choice of sampled_from).
    rare = st.tuples(st.sampled_from((False,) * 5 + (True,)), st.integers(0, 900)).map(
        lambda p: float(p[1]) if p[0] else None
    )
    return EngineSchedule(
        durations=durations,
        failures=failures,
        hook_delays=delays,
        events=tuple(draw(st.lists(events, max_size=3))),
        suspend_at=draw(rare),
        suspend_for=draw(st.integers(1, 300).map(float)),
        cancel_at=draw(rare),
        evict_at=tuple(draw(st.lists(st.integers(0, 900).map(float), max_size=2))),
        retry_after=draw(st.sampled_from((0.0, 2.5, 0.0, 45.25))),
    )


@st.composite
def engine_scenarios(draw: st.DrawFn, max_leaves: int = 8) -> tuple[Program, EngineSchedule]:
    """A program and the outside world of its run on the engine."""
    program = draw(programs(max_leaves))
    return program, draw(engine_schedules(program))


@st.composite
def held_scenarios(draw: st.DrawFn) -> tuple[Program, EngineSchedule]:
    """A run suspended while several things reach it: named events (several of one name, for
    waiters that started waiting in a known order, and some raised before anyone waits),
    step results, hook payloads and timers; resumed, it must see them in the order they came.
    """
    count = draw(st.integers(2, 5))
    leaves: list[Node] = []
    for i in range(count):
        node = i + 2
        kind = draw(st.sampled_from(("event", "event", "step", "hook", "sleep")))
        if kind == "event":
            leaves.append(Event(node=node, name=draw(st.sampled_from(EVENT_NAMES))))
        elif kind == "step":
            leaves.append(Step(node=node, name="a", arg=i))
        elif kind == "hook":
            leaves.append(Hook(node=node))
        else:
            leaves.append(Sleep(node=node, seconds=60.0))
    branches: tuple[Block, ...] = tuple((leaf,) for leaf in leaves)
    after = tuple(
        Event(node=count + 2 + i, name=name)
        for i, name in enumerate(draw(st.lists(st.sampled_from(EVENT_NAMES), max_size=2)))
    )
    program = Program((Gather(node=1, branches=branches), *after))
    inside = st.integers(2, 190).map(float)  # the run is suspended from 1 s to 200 s and more
    events = draw(st.lists(st.tuples(st.sampled_from(EVENT_NAMES), inside), min_size=1, max_size=6))
    steps = [n.node for n in leaves if isinstance(n, Step)]
    hooks = [n.node for n in leaves if isinstance(n, Hook)]
    schedule = EngineSchedule(
        durations=tuple((n, draw(inside)) for n in steps),
        hook_delays=tuple((n, draw(inside)) for n in hooks),
        events=tuple(events),
        suspend_at=1.0,
        suspend_for=draw(st.integers(200, 400).map(float)),
    )
    return program, schedule


@st.composite
def retry_scenarios(draw: st.DrawFn) -> tuple[Program, EngineSchedule]:
    """Steps with few retries and a growing backoff (``programs.FLAKY``), one after another,
    whose attempts fail as planned: ``RetryableError`` with a ``retry_after``, plain errors
    (the backoff), a ``FatalError``, sometimes more failures than retries."""
    count = draw(st.integers(1, 3))
    body = tuple(
        Step(node=i + 1, name=FLAKY, arg=i, catch=draw(st.booleans())) for i in range(count)
    )
    outcome = st.sampled_from(("error", "retry", "error", "fatal"))
    failures = tuple(
        (i + 1, tuple(draw(st.lists(outcome, min_size=1, max_size=5))))
        for i in range(count)
        if draw(st.booleans()) or i == 0
    )
    durations = tuple((i + 1, draw(st.integers(0, 30).map(float))) for i in range(count))
    schedule = EngineSchedule(
        durations=durations,
        failures=failures,
        retry_after=draw(st.sampled_from((0.5, 7.25, 200.0))),
    )
    return Program(body), schedule


def note_engine_run(program: Program, schedule: EngineSchedule, **options: object) -> None:
    """Print, on failure, the Python that reproduces an engine run."""
    extra = "".join(f", {k}={v!r}" for k, v in options.items() if v)
    note(
        "Reproduce with:\n"
        "    import asyncio\n"
        "    from tests.properties.programs import *\n"
        "    from tests.properties.engine_runs import *\n"
        "    from tests.properties.oracle import expected_outcome\n"
        f"    program = {program!r}\n"
        f"    schedule = {schedule!r}\n"
        f"    run = asyncio.run(run_on_engine(program, schedule{extra}))\n"
        "    expected = expected_outcome(program, schedule)"
    )
