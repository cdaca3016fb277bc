"""A faithful, deterministic stand-in for the runtime, at the workflow-instance level.

:class:`Sim` plays the engine's part for one run of a :class:`~tests.properties.programs.Program`
without asyncio, threads or a world: it keeps the log (stamping events and enforcing the world
rules the properties are about), feeds a live :class:`WorkflowInstance`, appends its commands,
and carries out *actions*: start or finish a step attempt, fire the earliest timer, send a hook
payload or a child's outcome, raise a named event, suspend, resume, cancel. It can also drop
the live instance (cache eviction) or "crash" (drop the instance *and* every attempt in flight)
right after any append, then recover by replaying the log, as a restarted engine does.

A :class:`Schedule` is data: ``picks`` choose among the enabled actions (modulo their number,
so any list of ints is a valid schedule and hypothesis can shrink it), then a fixed policy
drains the run to its end. The actions a run took are recorded (:attr:`Sim.actions`) so the
same run can be repeated with crashes and evictions injected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from tests.properties.programs import Program, child_result, definition, step_result
from worldflow import _serde
from worldflow._registry import Registry, WorkflowDefinition
from worldflow._replay.child_contract import CHILD_TOKEN_PREFIX, START_CHILD_STEP
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow.worlds import (
    NULL,
    AnyEvent,
    ErrorInfo,
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
    RunStatus,
    RunSuspended,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepRetrying,
    StepStarted,
    WaitCompleted,
    WaitCreated,
    WorkflowRun,
)
from worldflow.worlds._events import stamp

__all__ = ["RUN_ID", "T0", "Action", "Schedule", "Sim", "WorldRuleError", "run_schedule"]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
RUN_ID = "wrun_props"
_NODE = re.compile(r"^n(\d+)")
_MAX_ACTIONS = 2000
_MAX_PAYLOADS_PER_HOOK = 2
_MAX_EVENTS_PER_NAME = 3

Action = tuple[str, ...]
"""``("start", step_id)``, ``("finish", step_id)``, ``("timer", wait_id)``, ``("hook", token)``,
``("child", token)``, ``("event", name)``, ``("suspend",)``, ``("resume",)``, ``("cancel",)``."""


class WorldRuleError(AssertionError):
    """The instance asked for something a world refuses (a second creation or result)."""


@dataclass(frozen=True)
class Schedule:
    """How the outside world behaves during a run. ``repr`` is the Python that builds it.

    Attributes:
        picks: Each chooses one of the enabled actions (index modulo their number).
        failures: ``(node, outcomes)``: the attempts of that node's steps fail in order
            (``"retry"`` or ``"fatal"``) before one succeeds.
        max_retries: Failed attempts after which a retried step fails for good.
        suspend_at: Suspend the run before this pick (if it is still running).
        resume_at: Resume it before this pick.
        cancel_at: Cancel the run before this pick.
        crashes: Crash right after these appends (counted from 1): the live instance and
            every step attempt in flight are lost; the run is recovered from its log.
        evictions: Drop the cached instance before these actions (counted from 0).
    """

    picks: tuple[int, ...] = ()
    failures: tuple[tuple[int, tuple[str, ...]], ...] = ()
    max_retries: int = 2
    suspend_at: int | None = None
    resume_at: int | None = None
    cancel_at: int | None = None
    crashes: tuple[int, ...] = ()
    evictions: tuple[int, ...] = ()


def _unstamped(event: AnyEvent) -> AnyEvent:
    return stamp(event, seq=0, event_id="", created_at=datetime(1970, 1, 1, tzinfo=UTC))


@dataclass
class _StepState:
    created: StepCreated
    failures: int = 0
    result: AnyEvent | None = None


@dataclass
class _HookState:
    corr: str
    token: str
    payloads: int = 0
    disposed: bool = False


@dataclass
class Sim:
    """One run of ``program`` under ``schedule`` (see the module docstring)."""

    program: Program
    schedule: Schedule = field(default_factory=Schedule)
    seed: int = 0
    disrupt: bool = True
    """Apply the schedule's crashes and evictions (off for the reference run)."""

    def __post_init__(self) -> None:
        self.definition: WorkflowDefinition = definition(self.program)
        self.registry = Registry([self.definition])
        self.log: list[AnyEvent] = []
        self.time = T0
        self.instance: WorkflowInstance | None = None
        self.progress: Progress | None = None
        self.in_flight: set[str] = set()
        self.steps: dict[str, _StepState] = {}
        self.hooks: dict[str, _HookState] = {}  # by token, live or not
        self.live_tokens: dict[str, str] = {}  # token -> hook id
        self.waits: dict[str, WaitCreated] = {}
        self.waits_done: set[str] = set()
        self.raised: dict[str, int] = {}
        self.payloads = 0
        self.suspended = False
        self.terminal: AnyEvent | None = None
        self.appends = 0
        self.crashed = 0
        self.evicted = 0
        self.replays = 0
        self.actions: list[Action] = []
        self.plan = dict(self.schedule.failures)

    # -- the log, with the world's rules --------------------------------------------------------

    def append(self, events: list[AnyEvent]) -> list[AnyEvent]:
        """Store a batch as a world would (and refuse what a world refuses)."""
        stored: list[AnyEvent] = []
        for event in events:
            event = self._admit(event)
            seq = len(self.log) + 1
            event = stamp(event, seq=seq, event_id=f"evnt_{seq:05d}", created_at=self.time)
            if isinstance(event, (RunCompleted, RunFailed, RunCancelled)):
                self.terminal = event  # as stored
            self.log.append(event)
            stored.append(event)
        self.appends += 1
        return stored

    def _admit(self, event: AnyEvent) -> AnyEvent:
        if self.terminal is not None and not (
            isinstance(event, (StepStarted, StepCompleted, StepFailed, StepRetrying))
            and event.correlation_id in self.in_flight
        ):
            raise WorldRuleError(f"{event.type} appended after the run ended: {event}")
        corr = event.correlation_id or ""
        match event:
            case StepCreated():
                if corr in self.steps:
                    raise WorldRuleError(f"step {corr} created twice")
                self.steps[corr] = _StepState(event)
            case StepCompleted() | StepFailed():
                state = self.steps[corr]
                if state.result is not None:
                    raise WorldRuleError(f"a second result for step {corr}: {event}")
                state.result = event
            case WaitCreated():
                if corr in self.waits:
                    raise WorldRuleError(f"wait {corr} created twice")
                self.waits[corr] = event
            case WaitCompleted():
                if corr in self.waits_done:
                    raise WorldRuleError(f"wait {corr} completed twice")
                self.waits_done.add(corr)
            case HookCreated():
                if any(h.corr == corr for h in self.hooks.values()):
                    raise WorldRuleError(f"hook {corr} created twice")
                if event.token in self.live_tokens:
                    return HookConflict(
                        run_id=event.run_id,
                        correlation_id=corr,
                        token=event.token,
                        conflicting_run_id=event.run_id,
                    )
                self.live_tokens[event.token] = corr
                self.hooks[event.token] = _HookState(corr, event.token)
            case HookDisposed():
                for hook in self.hooks.values():
                    if hook.corr == corr and not hook.disposed:
                        hook.disposed = True
                        self.live_tokens.pop(hook.token, None)
            case RunSuspended():
                self.suspended = True
            case RunResumed():
                self.suspended = False
            case RunCompleted() | RunFailed() | RunCancelled():
                self.terminal = event
                self.live_tokens.clear()
                for hook in self.hooks.values():
                    hook.disposed = True
            case _:
                pass
        return event

    def run_view(self) -> WorkflowRun:
        return WorkflowRun(
            run_id=RUN_ID,
            workflow_name=self.definition.name,
            status=RunStatus.RUNNING,
            input=NULL,
            created_at=self.log[0].created_at,
            updated_at=self.time,
            last_seq=len(self.log),
        )

    # -- driving the instance --------------------------------------------------------------------

    def start(self) -> None:
        """``start``: the run's first events, then the first drive."""
        self.append(
            [
                RunCreated(
                    run_id=RUN_ID,
                    workflow_name=self.definition.name,
                    input=self.definition.encode_input(self.seed),
                ),
                RunStarted(run_id=RUN_ID),
            ]
        )
        self.after_append([])

    def close(self) -> None:
        if self.instance is not None:
            self.instance.close()
            self.instance = None

    def evict(self) -> None:
        """The cache drops the live instance; the next drive replays the log."""
        self.close()
        self.evicted += 1

    def crash(self) -> None:
        """The process dies: the instance and every attempt in flight are gone."""
        self.close()
        self.in_flight.clear()
        self.crashed += 1

    def after_append(self, stored: list[AnyEvent]) -> None:
        """What the engine does after an append of ``stored``: feed, settle (or crash)."""
        if self.disrupt and self.appends in self.schedule.crashes:
            self.crash()
        self.drive(stored)

    def drive(self, stored: list[AnyEvent]) -> None:
        for _ in range(100):
            if self.instance is None:
                self.instance = WorkflowInstance(
                    self.definition, self.run_view(), registry=self.registry
                )
                self.replays += 1
                progress = self.instance.feed(self.log)
            else:
                progress = self.instance.feed(stored)
            self.progress = progress
            self._check(progress)
            if not progress.commands:
                return
            stored = self.append(list(progress.commands))
            if self.disrupt and self.appends in self.schedule.crashes:
                self.crash()
        raise AssertionError("the instance's commands never settle")

    def _check(self, progress: Progress) -> None:
        """Property 3 as the instance sees it: never ask for a step that has its result.

        (While the run is suspended the instance holds new events, results included, so its
        pending steps are those of the moment it was suspended; the runtime starts nothing.)
        """
        if progress.suspended:
            return
        for corr in progress.pending_steps:
            state = self.steps.get(corr)
            assert state is not None, f"pending step {corr} was never created"
            assert state.result is None, (
                f"step {corr} is pending again although the log has its result {state.result}"
            )

    # -- actions ---------------------------------------------------------------------------------

    def enabled(self) -> list[Action]:
        """The actions possible now, in a stable order."""
        out: list[Action] = []
        if self.terminal is not None:
            return [("finish", corr) for corr in sorted(self.in_flight)]
        progress = self.progress
        assert progress is not None
        for corr in progress.pending_steps:
            if corr in self.in_flight:
                out.append(("finish", corr))
            elif not self.suspended:
                out.append(("start", corr))
        timers = [
            (w.resume_at, corr)
            for corr, w in self.waits.items()
            if corr not in self.waits_done and w.resume_at is not None
        ]
        if timers:
            first = min(at for at, _ in timers)
            out.extend(("timer", corr) for at, corr in sorted(timers) if at == first)
        for token, hook in sorted(self.hooks.items()):
            if hook.disposed:
                continue
            if token.startswith(CHILD_TOKEN_PREFIX):
                if hook.payloads == 0 and self._child_started(token):
                    out.append(("child", token))
            elif hook.payloads < _MAX_PAYLOADS_PER_HOOK:
                out.append(("hook", token))
        names = [*self.program.event_names(), "unwaited"]
        out.extend(("event", n) for n in names if self.raised.get(n, 0) < _MAX_EVENTS_PER_NAME)
        return out

    def _child_started(self, token: str) -> bool:
        child_run = token.removeprefix(CHILD_TOKEN_PREFIX)
        return any(
            isinstance(s.result, StepCompleted)
            and s.created.step_name == START_CHILD_STEP
            and _serde.decode(s.created.input)["run_id"] == child_run
            for s in self.steps.values()
        )

    def do(self, action: Action) -> None:
        """Carry out one action (at the next second of simulated time)."""
        self.actions.append(action)
        self.time += timedelta(seconds=1)
        kind = action[0]
        if kind == "start":
            self._outside([StepStarted(run_id=RUN_ID, correlation_id=action[1])])
            self.in_flight.add(action[1])
        elif kind == "finish":
            self._finish(action[1])
        elif kind == "timer":
            resume_at = self.waits[action[1]].resume_at
            assert resume_at is not None
            self.time = max(self.time, resume_at)
            self._outside([WaitCompleted(run_id=RUN_ID, correlation_id=action[1])])
        elif kind == "hook":
            hook = self.hooks[action[1]]
            hook.payloads += 1
            self.payloads += 1
            payload = _serde.encode(f"p{self.payloads}")
            self._outside([HookReceived(run_id=RUN_ID, correlation_id=hook.corr, payload=payload)])
        elif kind == "child":
            hook = self.hooks[action[1]]
            hook.payloads += 1
            payload = _serde.encode(self._child_outcome(action[1]))
            self._outside([HookReceived(run_id=RUN_ID, correlation_id=hook.corr, payload=payload)])
        elif kind == "event":
            self.raised[action[1]] = self.raised.get(action[1], 0) + 1
            payload = _serde.encode(sum(self.raised.values()))
            self._outside([EventRaised(run_id=RUN_ID, name=action[1], payload=payload)])
        elif kind == "suspend":
            self._outside([RunSuspended(run_id=RUN_ID)])
        elif kind == "resume":
            self._outside([RunResumed(run_id=RUN_ID)])
        elif kind == "cancel":
            self._outside([RunCancelled(run_id=RUN_ID, reason="cancelled by the schedule")])
        else:
            raise AssertionError(f"unknown action {action!r}")

    def _outside(self, events: list[AnyEvent]) -> None:
        self.after_append(self.append(events))

    def _finish(self, corr: str) -> None:
        if corr not in self.in_flight and self.terminal is not None:
            return  # the attempt died in a crash after the run ended: nothing is recorded
        if corr not in self.in_flight:
            # The attempt was lost in a crash: the restarted engine runs the step again.
            self._outside([StepStarted(run_id=RUN_ID, correlation_id=corr)])
            self.in_flight.add(corr)
        state = self.steps[corr]
        outcome = self._outcome(state)
        if outcome is None:
            inputs = _serde.decode(state.created.input)
            if state.created.step_name == START_CHILD_STEP:
                value: Any = None
            else:
                name = state.created.step_name.removeprefix("props.")
                value = step_result(name, inputs["key"], inputs["arg"])
            event: AnyEvent = StepCompleted(
                run_id=RUN_ID, correlation_id=corr, result=_serde.encode(value)
            )
        elif outcome == "fatal" or state.failures >= self.schedule.max_retries:
            error = ErrorInfo(
                name="FatalError" if outcome == "fatal" else "RetryableError",
                message=f"attempt {state.failures + 1} failed",
            )
            event = StepFailed(run_id=RUN_ID, correlation_id=corr, error=error)
        else:
            state.failures += 1
            error = ErrorInfo(name="RetryableError", message=f"attempt {state.failures} failed")
            event = StepRetrying(run_id=RUN_ID, correlation_id=corr, error=error)
        stored = self.append([event])
        self.in_flight.discard(corr)
        self.after_append(stored)

    def _outcome(self, state: _StepState) -> str | None:
        if state.created.step_name == START_CHILD_STEP:
            return None
        key = _serde.decode(state.created.input)["key"]
        match = _NODE.match(key)
        assert match is not None, key
        plan = self.plan.get(int(match.group(1)), ())
        # Outcomes follow *finished* attempts, so an attempt lost in a crash changes nothing.
        return plan[state.failures] if state.failures < len(plan) else None

    def _child_outcome(self, token: str) -> dict[str, Any]:
        child_run = token.removeprefix(CHILD_TOKEN_PREFIX)
        for state in self.steps.values():
            if state.created.step_name != START_CHILD_STEP:
                continue
            data = _serde.decode(state.created.input)
            if data["run_id"] != child_run:
                continue
            inputs = data["input"]
            if inputs["fail"]:
                message = f"child {inputs['key']} fails as planned"
                error = {"name": "FatalError", "message": message, "code": None}
                return {"status": "failed", "error": error}
            return {"status": "completed", "output": child_result(inputs["key"], inputs["calls"])}
        raise AssertionError(f"no child run {child_run}")

    # -- whole runs ------------------------------------------------------------------------------

    def finished(self) -> bool:
        return self.terminal is not None and not self.in_flight

    def drain_action(self) -> Action:
        """The next action of the fixed policy that takes any run to its end."""
        progress = self.progress
        assert progress is not None
        if self.terminal is None and self.suspended:
            return ("resume",)
        if self.terminal is None:
            # Start every pending step before finishing any, as a runtime running steps
            # concurrently does: their results then arrive back to back.
            for corr in progress.pending_steps:
                if corr not in self.in_flight:
                    return ("start", corr)
        if self.in_flight:
            order = {corr: i for i, corr in enumerate(progress.pending_steps)}
            return ("finish", min(self.in_flight, key=lambda c: (order.get(c, len(order)), c)))
        for action in self.enabled():
            if action[0] == "child":
                return action
        for line in progress.blocked_on:
            what, _, name = line.partition(" ")
            if what == "hook" and name in self.hooks and not self.hooks[name].disposed:
                return ("hook", name)
            if what == "event":
                return ("event", name)
        for action in self.enabled():
            if action[0] == "timer":
                return action
        raise AssertionError(
            f"the run is stuck: blocked on {progress.blocked_on} and nothing can move it"
        )

    def run_picks(self) -> None:
        """The reference run: resolve the schedule's picks, then drain."""
        self.start()
        schedule = self.schedule
        for i, pick in enumerate(schedule.picks):
            if self.terminal is not None:
                break
            if i == schedule.cancel_at:
                self.do(("cancel",))
                continue
            if i == schedule.suspend_at and not self.suspended:
                self.do(("suspend",))
            elif i == schedule.resume_at and self.suspended:
                self.do(("resume",))
            enabled = self.enabled()
            if self.terminal is None and enabled:
                self.do(enabled[pick % len(enabled)])
        self.drain()

    def drain(self) -> None:
        for _ in range(_MAX_ACTIONS):
            if self.finished():
                return
            self.do(self.drain_action())
        raise AssertionError(f"the run did not end within {_MAX_ACTIONS} actions")

    def run_actions(self, actions: list[Action]) -> None:
        """Repeat a recorded run's actions (with this schedule's crashes and evictions)."""
        self.start()
        for i, action in enumerate(actions):
            if self.disrupt and i in self.schedule.evictions:
                self.evict()
            self.do(action)

    def outcome(self) -> bytes:
        """The run's terminal event (without its seq and id)."""
        assert self.terminal is not None
        return msgspec.json.encode(_unstamped(self.terminal))

    def projection(self) -> list[bytes]:
        """The log without seq and ids, without step_started (a crash adds attempts), and
        without results recorded after the run ended (a crash may have killed the attempt)."""
        out: list[bytes] = []
        ended = False
        for event in self.log:
            if isinstance(event, StepStarted) or (ended and event.type.startswith("step_")):
                continue
            ended = ended or event is self.terminal
            out.append(msgspec.json.encode(_unstamped(event)))
        return out


def run_schedule(program: Program, schedule: Schedule, seed: int = 0) -> tuple[Sim, Sim]:
    """The reference run (picks, no disruption) and the same actions with the schedule's
    crashes and evictions."""
    reference = Sim(program, schedule, seed=seed, disrupt=False)
    try:
        reference.run_picks()
    finally:
        reference.close()
    disrupted = Sim(program, schedule, seed=seed, disrupt=True)
    try:
        disrupted.run_actions(reference.actions)
    finally:
        disrupted.close()
    return reference, disrupted
