"""A hypothesis state machine that drives a world with random valid and invalid appends.

Each step appends a batch (or purges a run) on a small pool of run ids, correlation ids and
hook tokens, so duplicates, token collisions, terminal runs and missing hooks come up often.
The world's answer (stored events or error class) must match :class:`Model`, and after every
step the world's views (runs, events, steps, hooks, waits, tokens, listings) must match it too.

A world that keeps its data (``reopen=True``) also gets a *reopen* rule: the world is closed
and opened again on the same directory, cleanly, or after a simulated power cut (``power_cut``
damages a copy of the files as the world left them in the page cache, then that copy is
opened); the model does not change, so every acknowledged write must still be there.

The world is async and hypothesis is not: each machine owns an event loop and runs every call
on it to completion.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from worldflow.errors import HookNotFoundError, RunNotFoundError, WorldflowError
from worldflow.worlds._events import (
    EventRaised,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStarted,
    RunSuspended,
    StateUpdated,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    WaitCompleted,
    WaitCreated,
)
from worldflow.worlds._protocol import EventResult, World
from worldflow.worlds._records import NULL, ErrorInfo, HookStatus, WaitStatus
from worldflow.worlds.testing._base import WorldFactory
from worldflow.worlds.testing._model import MODEL_KINDS, TERMINAL, Model, Stored

__all__ = ["WorldStateMachine", "run_world_state_machine", "state_machine_settings"]

T = TypeVar("T")

RUN_IDS = ("run-a", "run-b", "run-c")
CORRELATION_IDS = ("c1", "c2", "c3")
TOKENS = ("t1", "t2")
_ERROR = ErrorInfo(name="RuntimeError", message="boom")

# Aimed appends mostly pick a step, hook or wait that exists and an event that fits its state
# (with a few that do not), so entities live through their whole life cycles; blind appends
# draw anything, malformed input included.
_NEXT: dict[tuple[str, str], tuple[str, ...]] = {
    ("step", "pending"): ("step_started", "step_completed", "step_failed", "step_suspended"),
    ("step", "running"): (
        "step_completed",
        "step_retrying",
        "step_failed",
        "step_suspended",
        "step_started",
    ),
    ("step", "suspended"): ("step_resumed", "step_completed", "step_started"),
    ("step", "completed"): ("step_completed", "step_started"),
    ("step", "failed"): ("step_failed", "step_resumed"),
    ("hook", "active"): ("hook_received", "hook_disposed"),
    ("hook", "disposed"): ("hook_received", "hook_disposed"),
    ("wait", "waiting"): ("wait_completed",),
    ("wait", "completed"): ("wait_completed",),
}
_RUN_KINDS = tuple(k for k in MODEL_KINDS if k.startswith(("run_", "state_", "event_")))
_CREATIONS = ("step_created", "hook_created", "wait_created")
_TARGETS = ("step", "hook", "wait", "create", "run")
SPECS = st.tuples(
    st.sampled_from(MODEL_KINDS),
    st.sampled_from(CORRELATION_IDS),
    st.sampled_from(TOKENS),
)

# Aimed choices are drawn as one integer each and unpacked against the model: one draw per
# choice instead of a chain of dependent draws keeps hypothesis's overhead low. Hypothesis
# favours small values, and zero digits mean "aim at what exists".
RUN_PICKS = st.integers(0, 5 * len(RUN_IDS) - 1)  # digit 0-2: aimed, 3: the other state, 4: any
SPEC_PICKS = st.integers(
    0, 4 * len(_TARGETS) * 12 * len(MODEL_KINDS) * len(CORRELATION_IDS) * len(TOKENS) - 1
)


def _digits(value: int, *bases: int) -> list[int]:
    """``value`` in mixed radix ``bases``, least significant first."""
    out = []
    for base in bases:
        value, digit = divmod(value, base)
        out.append(digit)
    return out


def build_event(run_id: str, kind: str, corr: str, token: str) -> object:
    """The event (or malformed thing) a ``(kind, correlation id, token)`` spec stands for."""
    r = run_id
    match kind:
        case "run_created":
            return RunCreated(run_id=r, workflow_name="wf", input=NULL)
        case "run_started":
            return RunStarted(run_id=r)
        case "run_completed":
            return RunCompleted(run_id=r, output=NULL)
        case "run_failed":
            return RunFailed(run_id=r, error=_ERROR)
        case "run_cancelled":
            return RunCancelled(run_id=r)
        case "run_suspended":
            return RunSuspended(run_id=r)
        case "run_resumed":
            return RunResumed(run_id=r)
        case "state_updated":
            return StateUpdated(run_id=r, state=NULL)
        case "event_raised":
            return EventRaised(run_id=r, name=corr or "e")
        case "step_created":
            return StepCreated(run_id=r, correlation_id=corr, step_name="s", input=NULL)
        case "step_started":
            return StepStarted(run_id=r, correlation_id=corr)
        case "step_completed":
            return StepCompleted(run_id=r, correlation_id=corr, result=NULL)
        case "step_failed":
            return StepFailed(run_id=r, correlation_id=corr, error=_ERROR)
        case "step_retrying":
            return StepRetrying(run_id=r, correlation_id=corr, error=_ERROR)
        case "step_suspended":
            return StepSuspended(run_id=r, correlation_id=corr)
        case "step_resumed":
            return StepResumed(run_id=r, correlation_id=corr)
        case "wait_created":
            return WaitCreated(run_id=r, correlation_id=corr)
        case "wait_completed":
            return WaitCompleted(run_id=r, correlation_id=corr)
        case "hook_created":
            return HookCreated(run_id=r, correlation_id=corr, token=token)
        case "hook_received":
            return HookReceived(run_id=r, correlation_id=corr, payload=NULL)
        case "hook_disposed":
            return HookDisposed(run_id=r, correlation_id=corr)
        case "bad_run_id":
            return RunStarted(run_id=f"{r}-other")
        case "bad_correlation_id":
            return StepStarted(run_id=r, correlation_id="")
        case "bad_object":
            return {"type": "run_started", "run_id": r}
        case "bad_hook_conflict":
            return HookConflict(run_id=r, correlation_id=corr, token=token)
    raise AssertionError(f"unknown spec kind {kind}")


async def _cancel_other_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _stored(result: EventResult) -> list[Stored]:
    return [
        (e.type, e.conflicting_run_id if isinstance(e, HookConflict) else None)
        for e in result.events
    ]


class WorldStateMachine(RuleBasedStateMachine):
    """Random appends and purges checked against :class:`Model`.

    Set ``factory`` (a :data:`WorldFactory`) on a subclass, or use
    :func:`run_world_state_machine`.
    """

    factory: ClassVar[WorldFactory | None] = None
    reopens: ClassVar[bool] = False
    """The world keeps its data in its directory: the ``reopen`` rule runs."""
    power_cut: ClassVar[Callable[[Path], None] | None] = None
    """Damages a copy of the world's directory as a power cut would (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        factory = type(self).factory
        if factory is None:
            raise TypeError("set `factory` on a WorldStateMachine subclass to the world to test")
        # A loop of its own, driven with run_until_complete: asyncio.Runner.run would reinstall
        # its SIGINT handler on every call, which costs more than most world operations.
        self._loop = asyncio.new_event_loop()
        self._dir = tempfile.TemporaryDirectory(prefix="worldflow-stateful-")
        self._opened: AbstractAsyncContextManager[World] = factory(Path(self._dir.name))
        self.world: World = self._run(self._opened.__aenter__())
        self.model = Model()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def teardown(self) -> None:
        loop = self._loop
        try:
            self._run(self._opened.__aexit__(None, None, None))
        finally:
            loop.run_until_complete(_cancel_other_tasks())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._dir.cleanup()

    def _call(self, coro: Any) -> Any:
        """Run ``coro`` on the machine's loop; a worldflow error is returned, not raised."""

        async def guarded() -> Any:
            try:
                return await coro
            except WorldflowError as exc:
                return exc

        return self._run(guarded())

    # -- rules -----------------------------------------------------------------------------

    def _check_append(self, run_id: str, specs: list[tuple[str, str, str]]) -> None:
        previous = len(self.model.runs[run_id].events) if run_id in self.model.runs else 0
        expected = self.model.append(run_id, specs)
        events = [build_event(run_id, *spec) for spec in specs]
        outcome = self._call(self.world.append(run_id, events))  # type: ignore[arg-type]
        where = f"append({run_id!r}, {specs!r})"
        if isinstance(expected, list):
            assert isinstance(outcome, EventResult), (
                f"{where}: expected {expected}, got {outcome!r}"
            )
            assert _stored(outcome) == expected, f"{where}: stored {_stored(outcome)}"
            seqs = [e.seq for e in outcome.events]
            assert seqs == list(range(previous + 1, previous + 1 + len(seqs))), f"{where}: {seqs}"
        else:
            assert type(outcome) is expected, (
                f"{where}: expected {expected.__name__}, got {outcome!r}"
            )

    def _pick_run(self, pick: int, *, terminal: bool = False) -> str:
        """Mostly a run that exists and is not (or, for ``terminal``, is) finished; sometimes
        one in the other state, sometimes any id."""
        kind, index = _digits(pick, 5, len(RUN_IDS))
        runs = self.model.runs
        wanted = terminal if kind < 3 else not terminal
        aimed = [r for r in RUN_IDS if r in runs and (runs[r].status in TERMINAL) == wanted]
        pool = aimed if aimed and kind < 4 else RUN_IDS
        return pool[index % len(pool)]

    def _pick_spec(self, run_id: str, pick: int) -> tuple[str, str, str]:
        """An event spec for ``run_id``: mostly aimed at what exists, sometimes blind."""
        blind, target_index, n, kind_index, corr_index, token_index = _digits(
            pick, 4, len(_TARGETS), 12, len(MODEL_KINDS), len(CORRELATION_IDS), len(TOKENS)
        )
        corr, token = CORRELATION_IDS[corr_index], TOKENS[token_index]
        run = self.model.runs.get(run_id)
        if run is None or blind == 3:
            return MODEL_KINDS[kind_index], corr, token
        target = _TARGETS[target_index]
        if target == "run":
            return _RUN_KINDS[n % len(_RUN_KINDS)], "", token
        states: dict[str, str] = {}
        if target == "step":
            states = {k: v.status for k, v in run.steps.items()}
        elif target == "hook":
            states = {k: "active" if v.active else "disposed" for k, v in run.hooks.items()}
        elif target == "wait":
            states = {k: "waiting" if v.waiting else "completed" for k, v in run.waits.items()}
        if not states:  # nothing to aim at (yet): create something
            return _CREATIONS[n % len(_CREATIONS)], corr, token
        ids = sorted(states)
        chosen = ids[n % len(ids)]
        kinds = _NEXT[target, states[chosen]]
        return kinds[(n // len(ids)) % len(kinds)], chosen, token

    @initialize()
    def create_two_runs(self) -> None:
        for run_id in RUN_IDS[:2]:
            self._check_append(run_id, [("run_created", "", "")])

    @precondition(lambda self: len(self.model.runs) < len(RUN_IDS))
    @rule(index=st.integers(0, 5))
    def create_run(self, index: int) -> None:
        free = [r for r in RUN_IDS if r not in self.model.runs]
        self._check_append(free[index % len(free)], [("run_created", "", "")])

    @rule(run=RUN_PICKS, pick=SPEC_PICKS)
    def append_one(self, run: int, pick: int) -> None:
        run_id = self._pick_run(run)
        self._check_append(run_id, [self._pick_spec(run_id, pick)])

    @rule(run=RUN_PICKS, picks=st.lists(SPEC_PICKS, min_size=2, max_size=3))
    def append_batch(self, run: int, picks: list[int]) -> None:
        run_id = self._pick_run(run)
        self._check_append(run_id, [self._pick_spec(run_id, p) for p in picks])

    @rule(run_id=st.sampled_from(RUN_IDS), specs=st.lists(SPECS, min_size=1, max_size=4))
    def append_anything(self, run_id: str, specs: list[tuple[str, str, str]]) -> None:
        self._check_append(run_id, specs)

    @precondition(lambda self: self.reopens)
    @rule(cut=st.booleans())
    def reopen(self, cut: bool) -> None:
        """Close the world and open it again on its directory; with ``cut`` (and a
        ``power_cut``), open instead a copy of the files taken while it was open, damaged."""
        factory = type(self).factory
        assert factory is not None
        power_cut = type(self).power_cut
        path = Path(self._dir.name)
        snapshot = None
        if cut and power_cut is not None:
            snapshot = Path(tempfile.mkdtemp(prefix="worldflow-stateful-cut-"))
            shutil.copytree(path, snapshot / "copy", symlinks=True, copy_function=_copy_if_there)
        self._run(self._opened.__aexit__(None, None, None))
        if snapshot is not None:
            assert power_cut is not None
            shutil.rmtree(path)
            shutil.move(snapshot / "copy", path)
            shutil.rmtree(snapshot)
            power_cut(path)
        self._opened = factory(path)
        self.world = self._run(self._opened.__aenter__())

    @rule(run=RUN_PICKS)
    def purge(self, run: int) -> None:
        run_id = self._pick_run(run, terminal=True)
        expected = self.model.purge(run_id)
        outcome = self._call(self.world.purge(run_id))
        if expected is None:
            assert outcome is None, f"purge({run_id!r}): expected success, got {outcome!r}"
        else:
            assert type(outcome) is expected, (
                f"purge({run_id!r}): expected {expected}, got {outcome!r}"
            )

    # -- the views must match the model ---------------------------------------------------

    @invariant()
    def views_match_model(self) -> None:
        self._run(self._check_views())

    async def _check_views(self) -> None:
        world, model = self.world, self.model
        for run_id in RUN_IDS:
            expected = model.runs.get(run_id)
            if expected is None:
                try:
                    await world.get_run(run_id)
                except RunNotFoundError:
                    continue
                raise AssertionError(f"run {run_id} should not exist")
            run = await world.get_run(run_id)
            assert run.status.value == expected.status, (run_id, run.status, expected.status)
            assert run.last_seq == len(expected.events), (run_id, run.last_seq)
            events = (await world.list_events(run_id)).items
            assert [e.type for e in events] == expected.events, (run_id, events)
            assert [e.seq for e in events] == list(range(1, len(events) + 1)), run_id
            steps = (await world.list_steps(run_id)).items
            assert [(s.step_id, s.status.value, s.attempt) for s in steps] == [
                (k, s.status, s.attempt) for k, s in expected.steps.items()
            ], (run_id, steps)
            hooks = (await world.list_hooks(run_id=run_id)).items
            assert [
                (h.hook_id, h.token, h.status is HookStatus.ACTIVE, h.received_count) for h in hooks
            ] == [(k, h.token, h.active, h.received) for k, h in expected.hooks.items()], (
                run_id,
                hooks,
            )
            waits = (await world.list_waits(run_id=run_id)).items
            assert [(w.wait_id, w.status is WaitStatus.WAITING) for w in waits] == [
                (k, w.waiting) for k, w in expected.waits.items()
            ], (run_id, waits)
        live = model.tokens()
        for token in TOKENS:
            try:
                hook = await world.get_hook_by_token(token)
            except HookNotFoundError:
                assert token not in live, f"token {token} should resolve to {live[token]}"
                continue
            assert (hook.run_id, hook.hook_id) == live.get(token), (token, hook)
        runs = sorted(model.runs, key=lambda r: model.runs[r].order)
        listed = (await world.list_runs(order="asc")).items
        assert [r.run_id for r in listed] == runs
        all_hooks = sorted(
            ((h.order, r, k) for r, run in model.runs.items() for k, h in run.hooks.items())
        )
        listed_hooks = (await world.list_hooks()).items
        assert [(h.run_id, h.hook_id) for h in listed_hooks] == [(r, k) for _, r, k in all_hooks]
        all_waits = sorted(
            ((w.order, r, k) for r, run in model.runs.items() for k, w in run.waits.items())
        )
        listed_waits = (await world.list_waits()).items
        assert [(w.run_id, w.wait_id) for w in listed_waits] == [(r, k) for _, r, k in all_waits]


def state_machine_settings(slow: bool | None = None, max_examples: int | None = None) -> settings:
    """Hypothesis settings: ~300 fixed examples of 30 steps; ten times more, random, when
    ``slow``.

    ``slow=None`` reads ``WORLDFLOW_SLOW`` from the environment (``1`` means slow).
    ``max_examples`` replaces the 300 (not the ``slow`` budget), for a world whose every
    write waits for the disk.
    """
    if slow is None:
        slow = os.environ.get("WORLDFLOW_SLOW", "") not in ("", "0")
    return settings(
        max_examples=3000 if slow else max_examples or 300,
        stateful_step_count=60 if slow else 30,
        # The default budget draws the same examples on every run and keeps no database
        # (a red build is the same red build anywhere); ``slow`` draws fresh ones.
        derandomize=not slow,
        database=settings().database if slow else None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def run_world_state_machine(
    factory: WorldFactory,
    *,
    slow: bool | None = None,
    max_examples: int | None = None,
    reopen: bool = False,
    power_cut: Callable[[Path], None] | None = None,
) -> None:
    """Run :class:`WorldStateMachine` against the worlds ``factory`` opens (budget: see
    :func:`state_machine_settings`).

    ``reopen``: the world keeps its data in the factory's directory, so the machine also
    closes and reopens it; ``power_cut(path)`` (optional) damages the directory as a power
    cut would before some of those reopens (drop what was never synced, leave debris).

    Example (one world factory per parameter)::

        @pytest.mark.parametrize("factory", [memory_world, file_world])
        def test_world_state_machine(factory: WorldFactory, slow: bool) -> None:
            run_world_state_machine(factory, slow=slow)
    """
    name = getattr(factory, "__name__", "world")
    attributes: dict[str, object] = {"factory": factory, "reopens": reopen}
    if power_cut is not None:
        attributes["power_cut"] = staticmethod(power_cut)
    machine = type(f"WorldStateMachine[{name}]", (WorldStateMachine,), attributes)
    run_state_machine_as_test(machine, settings=state_machine_settings(slow, max_examples))


def _copy_if_there(source: str, target: str) -> None:
    """Copy one file of a live world for the power-cut snapshot, skipping a file the world
    removed while the copy walked its directory (a world's helper threads may: the file
    world's spare files are linked into place and their own names removed at any time). A
    power cut at that instant would not have found that file either."""
    try:
        shutil.copy2(source, target)
    except FileNotFoundError:
        pass
