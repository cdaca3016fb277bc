"""The memory world's logs and views, and the rules applied to every appended batch.

:class:`Batch` applies a batch of events to an overlay of one run's state, so a refused event
leaves nothing behind; only :meth:`Batch.commit` writes the stored state, and it cannot fail.
Every lookup is a dict access on the run's own state (or the world's token table), so an
append costs the same however many runs the world holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec

from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    InvalidEventError,
    NotFoundError,
    RunNotFoundError,
    RunTerminalError,
    StepNotFoundError,
)
from worldflow.worlds._events import (
    CORRELATED_EVENT_TYPES,
    AnyEvent,
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
    RunStalled,
    RunStarted,
    RunSuspended,
    RunUnstalled,
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
    check_event,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._records import (
    TERMINAL_RUN_STATUSES,
    TERMINAL_STEP_STATUSES,
    Hook,
    HookStatus,
    RunStatus,
    Step,
    StepStatus,
    Wait,
    WaitStatus,
    WorkflowRun,
)
from worldflow.worlds._wakeups import Signal

__all__ = ["Batch", "LogState", "RunState", "StreamState"]

_replace = msgspec.structs.replace

# What a running step may still record after its run ended: the outcome of its attempt.
IN_FLIGHT_RESULT_TYPES: Final = frozenset(
    {"step_completed", "step_failed", "step_retrying", "step_suspended"}
)


@dataclass(slots=True, eq=False)
class StreamState:
    """One named stream of a run."""

    chunks: list[bytes] = field(default_factory=list)
    closed: bool = False


class RunState:
    """Everything the world holds about one run, indexed for O(1) access.

    Args:
        run: The run's view.
        index: Its creation order in the world (the ``list_runs`` cursor).
    """

    __slots__ = (
        "changed",
        "claimed_hook_ids",
        "events",
        "hook_order",
        "hook_pos",
        "hooks",
        "index",
        "live_hooks",
        "run",
        "step_order",
        "steps",
        "streams",
        "streams_changed",
        "wait_order",
        "wait_pos",
        "waiting",
        "waits",
    )

    def __init__(self, run: WorkflowRun, index: int) -> None:
        # Written out rather than a dataclass's default factories: one is made per run.
        self.run = run
        self.index = index
        self.events: list[AnyEvent] = []  # events[i].seq == i + 1
        self.steps: dict[str, Step] = {}
        self.step_order: list[str] = []
        self.hooks: dict[str, Hook] = {}
        self.hook_order: list[str] = []
        self.hook_pos: dict[str, int] = {}  # position in LogState.hook_order
        self.claimed_hook_ids: set[str] = set()  # incl. those refused by conflict
        self.live_hooks: set[str] = set()
        self.waits: dict[str, Wait] = {}
        self.wait_order: list[str] = []
        self.wait_pos: dict[str, int] = {}  # position in LogState.wait_order
        self.waiting: set[str] = set()
        self.streams: dict[str, StreamState] = {}
        self.changed = Signal()  # the log grew
        self.streams_changed = Signal()  # a stream grew, closed or ended


@dataclass(slots=True, eq=False)
class LogState:
    """The world-wide tables. Purged entries leave ``None`` holes so positions stay cursors."""

    runs: dict[str, RunState] = field(default_factory=dict)
    run_order: list[RunState | None] = field(default_factory=list)
    hook_order: list[tuple[str, str] | None] = field(default_factory=list)
    wait_order: list[tuple[str, str] | None] = field(default_factory=list)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # live token -> (run, hook)

    def purge(self, state: RunState) -> None:
        """Forget a run and everything indexed by it."""
        run_id = state.run.run_id
        del self.runs[run_id]
        self.run_order[state.index] = None
        for pos in state.hook_pos.values():
            self.hook_order[pos] = None
        for pos in state.wait_pos.values():
            self.wait_order[pos] = None
        for hook_id in state.live_hooks:  # empty for a terminal run; kept for safety
            self.tokens.pop(state.hooks[hook_id].token, None)


class Batch:
    """One append in progress: events applied to an overlay of the run's state.

    Call :meth:`add` for each event (it raises on the first refused one; the overlay is then
    simply dropped), then :meth:`commit`.

    Appending is the hot path of every workflow, so events are dispatched by their exact
    class (one dict lookup, not a chain of ``isinstance``) and each view is replaced once
    per event.
    """

    __slots__ = (
        "base",
        "claimed",
        "events",
        "hooks",
        "log",
        "now",
        "run",
        "run_id",
        "seq",
        "steps",
        "tokens",
        "waits",
    )

    def __init__(self, log: LogState, run_id: str, now: datetime) -> None:
        self.log = log
        self.run_id = run_id
        self.now = now
        base = self.base = log.runs.get(run_id)
        run = self.run = base.run if base is not None else None
        self.seq = run.last_seq if run is not None else 0
        self.events: list[AnyEvent] = []
        self.steps: dict[str, Step] = {}
        self.hooks: dict[str, Hook] = {}
        self.waits: dict[str, Wait] = {}
        self.claimed: set[str] = set()
        self.tokens: dict[str, str | None] = {}  # token -> hook id of this run, None: freed

    # -- lookups through the overlay -----------------------------------------------------

    def _step(self, step_id: str) -> Step | None:
        step = self.steps.get(step_id)
        if step is None and self.base is not None:
            step = self.base.steps.get(step_id)
        return step

    def _hook(self, hook_id: str) -> Hook | None:
        hook = self.hooks.get(hook_id)
        if hook is None and self.base is not None:
            hook = self.base.hooks.get(hook_id)
        return hook

    def _wait(self, wait_id: str) -> Wait | None:
        wait = self.waits.get(wait_id)
        if wait is None and self.base is not None:
            wait = self.base.waits.get(wait_id)
        return wait

    def _token_holder(self, token: str) -> str | None:
        """The run whose live hook holds ``token``, if any."""
        if token in self.tokens:
            return self.run_id if self.tokens[token] is not None else None
        held = self.log.tokens.get(token)
        return held[0] if held else None

    # -- applying events -----------------------------------------------------------------

    def add(self, event: object) -> None:
        """Apply one event, or raise the error the module rules give for it."""
        kind = type(event)
        apply = _APPLY.get(kind)
        if (
            apply is None
            or event.run_id != self.run_id  # type: ignore[attr-defined]
            or (
                kind in _CORRELATED
                and (
                    type(event.correlation_id) is not str  # type: ignore[attr-defined]
                    or not event.correlation_id  # type: ignore[attr-defined]
                )
            )
        ):
            check_event(event, self.run_id)  # raises the error that teaches
            apply = _apply_for(kind)
        ev: AnyEvent = event  # type: ignore[assignment]  # checked above
        refused = apply is _REFUSED  # run_created or hook_conflict
        if refused and isinstance(ev, HookConflict):
            raise InvalidEventError(
                "hook_conflict is written by the world, not appended: append hook_created and "
                "the world stores hook_conflict if the token is taken"
            )
        run = self.run
        if run is None:
            if not isinstance(ev, RunCreated):
                raise RunNotFoundError(
                    f"no run {self.run_id!r}: its first event must be run_created, not {ev.type}"
                )
            self.run = WorkflowRun(
                run_id=self.run_id,
                workflow_name=ev.workflow_name,
                status=RunStatus.PENDING,
                input=ev.input,
                created_at=self.now,
                updated_at=self.now,
                resource_id=ev.resource_id,
                metadata=dict(ev.metadata),
                state=ev.initial_state,
                parent_run_id=ev.parent_run_id,
            )
            self._store(ev)
            return
        if refused:  # a second run_created
            raise EntityConflictError(f"run {self.run_id!r} already exists")
        if run.status in TERMINAL_RUN_STATUSES:
            if isinstance(ev, RunCancelled) and run.status is RunStatus.CANCELLED:
                return  # cancelling a cancelled run is a no-op success
            if not self._is_in_flight_result(ev):
                raise RunTerminalError(
                    f"run {self.run_id!r} is {run.status.value}: it accepts only the result "
                    f"of a step that is running, not {ev.type}"
                )
        if apply(self, ev, run):
            self._store(ev)

    def _is_in_flight_result(self, ev: AnyEvent) -> bool:
        if ev.type not in IN_FLIGHT_RESULT_TYPES or ev.correlation_id is None:
            return False
        step = self._step(ev.correlation_id)
        return step is not None and step.status is StepStatus.RUNNING

    def _store(self, ev: AnyEvent) -> None:
        self.seq += 1
        self.events.append(_replace(ev, seq=self.seq, event_id=new_id("evnt"), created_at=self.now))

    # One method per event type; each returns whether to store the event (False: a no-op).

    def _refused(self, ev: AnyEvent, run: WorkflowRun) -> bool:  # pragma: no cover
        raise AssertionError("run_created and hook_conflict are refused before dispatch")

    def _run_started(self, ev: RunStarted, run: WorkflowRun) -> bool:
        if run.status is not RunStatus.PENDING:
            return False  # idempotent while running; a suspended run stays so
        self.run = _replace(run, status=RunStatus.RUNNING, started_at=self.now)
        return True

    def _run_completed(self, ev: RunCompleted, run: WorkflowRun) -> bool:
        self._finish(run, RunStatus.COMPLETED, output=ev.output)
        return True

    def _run_failed(self, ev: RunFailed, run: WorkflowRun) -> bool:
        self._finish(run, RunStatus.FAILED, error=ev.error)
        return True

    def _run_cancelled(self, ev: RunCancelled, run: WorkflowRun) -> bool:
        self._finish(run, RunStatus.CANCELLED, output=ev.output, cancel_reason=ev.reason)
        return True

    def _run_suspended(self, ev: RunSuspended, run: WorkflowRun) -> bool:
        if run.status is RunStatus.SUSPENDED:
            return False
        self.run = _replace(run, status=RunStatus.SUSPENDED)
        return True

    def _run_resumed(self, ev: RunResumed, run: WorkflowRun) -> bool:
        if run.status is not RunStatus.SUSPENDED:
            return False
        back = RunStatus.RUNNING if run.started_at is not None else RunStatus.PENDING
        self.run = _replace(run, status=back)
        return True

    def _run_stalled(self, ev: RunStalled, run: WorkflowRun) -> bool:
        if run.status is RunStatus.SUSPENDED:
            return False  # nothing drives a paused run: it stalls, if at all, once resumed
        self.run = _replace(run, status=RunStatus.STALLED, error=ev.error)
        return True

    def _run_unstalled(self, ev: RunUnstalled, run: WorkflowRun) -> bool:
        if run.status is not RunStatus.STALLED:
            return False
        self.run = _replace(run, status=RunStatus.RUNNING, error=None)
        return True

    def _state_updated(self, ev: StateUpdated, run: WorkflowRun) -> bool:
        self.run = _replace(run, state=ev.state)
        return True

    def _event_raised(self, ev: EventRaised, run: WorkflowRun) -> bool:
        return True

    def _step_created(self, ev: StepCreated, run: WorkflowRun) -> bool:
        step_id = ev.correlation_id
        if self._step(step_id) is not None:
            raise EntityConflictError(f"step {step_id!r} of run {run.run_id!r} exists")
        now = self.now
        self.steps[step_id] = Step(
            run_id=run.run_id,
            step_id=step_id,
            step_name=ev.step_name,
            status=StepStatus.PENDING,
            input=ev.input,
            created_at=now,
            updated_at=now,
        )
        return True

    def _open_step(self, step_id: str) -> Step:
        step = self._step(step_id)
        if step is None:
            raise StepNotFoundError(f"run {self.run_id!r} has no step {step_id!r}")
        if step.status in TERMINAL_STEP_STATUSES:
            raise EntityConflictError(
                f"step {step_id!r} already {step.status.value}: the first result wins"
            )
        return step

    def _step_started(self, ev: StepStarted, run: WorkflowRun) -> bool:
        step_id = ev.correlation_id
        step = self._open_step(step_id)
        if step.status is StepStatus.SUSPENDED:
            raise EntityConflictError(
                f"step {step_id!r} is suspended: append step_resumed before starting it"
            )
        now = self.now
        self.steps[step_id] = _replace(
            step,
            status=StepStatus.RUNNING,
            attempt=step.attempt + 1,
            started_at=step.started_at or now,
            retry_after=None,
            updated_at=now,
        )
        return True

    def _step_completed(self, ev: StepCompleted, run: WorkflowRun) -> bool:
        step = self._open_step(ev.correlation_id)
        now = self.now
        self.steps[ev.correlation_id] = _replace(
            step, status=StepStatus.COMPLETED, output=ev.result, completed_at=now, updated_at=now
        )
        return True

    def _step_failed(self, ev: StepFailed, run: WorkflowRun) -> bool:
        step = self._open_step(ev.correlation_id)
        now = self.now
        self.steps[ev.correlation_id] = _replace(
            step, status=StepStatus.FAILED, error=ev.error, completed_at=now, updated_at=now
        )
        return True

    def _step_retrying(self, ev: StepRetrying, run: WorkflowRun) -> bool:
        step = self._open_step(ev.correlation_id)
        self.steps[ev.correlation_id] = _replace(
            step,
            status=StepStatus.PENDING,
            error=ev.error,
            retry_after=ev.retry_after,
            updated_at=self.now,
        )
        return True

    def _step_suspended(self, ev: StepSuspended, run: WorkflowRun) -> bool:
        step = self._open_step(ev.correlation_id)
        self.steps[ev.correlation_id] = _replace(
            step, status=StepStatus.SUSPENDED, suspend_payload=ev.payload, updated_at=self.now
        )
        return True

    def _step_resumed(self, ev: StepResumed, run: WorkflowRun) -> bool:
        step_id = ev.correlation_id
        step = self._open_step(step_id)
        if step.status is not StepStatus.SUSPENDED:
            raise EntityConflictError(
                f"step {step_id!r} is {step.status.value}, not suspended: "
                "only a suspended step can be resumed"
            )
        self.steps[step_id] = _replace(
            step, status=StepStatus.PENDING, resume_data=ev.data, updated_at=self.now
        )
        return True

    def _wait_created(self, ev: WaitCreated, run: WorkflowRun) -> bool:
        wait_id = ev.correlation_id
        if self._wait(wait_id) is not None:
            raise EntityConflictError(f"wait {wait_id!r} of run {run.run_id!r} exists")
        self.waits[wait_id] = Wait(
            run_id=run.run_id,
            wait_id=wait_id,
            status=WaitStatus.WAITING,
            created_at=self.now,
            resume_at=ev.resume_at,
            event_name=ev.event_name,
        )
        return True

    def _wait_completed(self, ev: WaitCompleted, run: WorkflowRun) -> bool:
        wait_id = ev.correlation_id
        wait = self._wait(wait_id)
        if wait is None:
            raise NotFoundError(f"run {run.run_id!r} has no wait {wait_id!r}")
        if wait.status is WaitStatus.COMPLETED:
            raise EntityConflictError(f"wait {wait_id!r} has already completed")
        self.waits[wait_id] = _replace(wait, status=WaitStatus.COMPLETED, completed_at=self.now)
        return True

    def _live_hook(self, hook_id: str, run: WorkflowRun) -> Hook:
        hook = self._hook(hook_id)
        if hook is None or hook.status is not HookStatus.ACTIVE:
            why = "was disposed" if hook is not None else "does not exist"
            raise HookNotFoundError(f"hook {hook_id!r} of run {run.run_id!r} {why}")
        return hook

    def _hook_received(self, ev: HookReceived, run: WorkflowRun) -> bool:
        hook = self._live_hook(ev.correlation_id, run)
        self.hooks[hook.hook_id] = _replace(hook, received_count=hook.received_count + 1)
        return True

    def _hook_disposed(self, ev: HookDisposed, run: WorkflowRun) -> bool:
        self._dispose(self._live_hook(ev.correlation_id, run))
        return True

    def _hook_created(self, ev: HookCreated, run: WorkflowRun) -> bool:
        hook_id, token = ev.correlation_id, ev.token
        if hook_id in self.claimed or (
            self.base is not None and hook_id in self.base.claimed_hook_ids
        ):
            raise EntityConflictError(f"hook {hook_id!r} of run {self.run_id!r} exists")
        self.claimed.add(hook_id)
        holder = self._token_holder(token)
        if holder is not None:
            conflict = HookConflict(
                run_id=self.run_id,
                correlation_id=hook_id,
                token=token,
                conflicting_run_id=holder,
            )
            self._store(conflict)
            return False
        self.hooks[hook_id] = Hook(
            run_id=self.run_id,
            hook_id=hook_id,
            token=token,
            status=HookStatus.ACTIVE,
            created_at=self.now,
            metadata=ev.metadata,
            is_webhook=ev.is_webhook,
        )
        self.tokens[token] = hook_id
        return True

    def _dispose(self, hook: Hook) -> None:
        self.hooks[hook.hook_id] = _replace(hook, status=HookStatus.DISPOSED, disposed_at=self.now)
        self.tokens[hook.token] = None

    def _finish(self, run: WorkflowRun, status: RunStatus, **changes: object) -> None:
        """Make the run terminal and release its hooks and waits."""
        self.run = _replace(run, status=status, completed_at=self.now, **changes)
        base = self.base
        hook_ids = dict.fromkeys([*(base.live_hooks if base else ()), *self.hooks])
        for hook_id in hook_ids:
            hook = self._hook(hook_id)
            if hook is not None and hook.status is HookStatus.ACTIVE:
                self._dispose(hook)
        wait_ids = dict.fromkeys([*(base.waiting if base else ()), *self.waits])
        for wait_id in wait_ids:
            wait = self._wait(wait_id)
            if wait is not None and wait.status is WaitStatus.WAITING:
                self.waits[wait_id] = _replace(
                    wait, status=WaitStatus.COMPLETED, completed_at=self.now
                )

    # -- committing ----------------------------------------------------------------------

    def commit(self) -> RunState:
        """Write the overlay into the stored state (cannot fail) and return the run's state."""
        assert self.run is not None, "commit() after a batch that created no run"
        log = self.log
        run = self.run
        if self.events:
            run = _replace(run, last_seq=self.seq, updated_at=self.now)
        state = self.base
        if state is None:
            state = RunState(run=run, index=len(log.run_order))
            log.run_order.append(state)
            log.runs[self.run_id] = state
        state.run = run
        state.events.extend(self.events)
        if self.steps:
            steps = state.steps
            for step_id, step in self.steps.items():
                if step_id not in steps:
                    state.step_order.append(step_id)
                steps[step_id] = step
        if self.hooks:
            self._commit_hooks(state)
        if self.claimed:
            state.claimed_hook_ids |= self.claimed
        for token, holder in self.tokens.items():
            if holder is None:
                log.tokens.pop(token, None)
            else:
                log.tokens[token] = (self.run_id, holder)
        if self.waits:
            self._commit_waits(state)
        return state

    def _commit_hooks(self, state: RunState) -> None:
        log = self.log
        for hook_id, hook in self.hooks.items():
            if hook_id not in state.hooks:
                state.hook_order.append(hook_id)
                state.hook_pos[hook_id] = len(log.hook_order)
                log.hook_order.append((self.run_id, hook_id))
            state.hooks[hook_id] = hook
            if hook.status is HookStatus.ACTIVE:
                state.live_hooks.add(hook_id)
            else:
                state.live_hooks.discard(hook_id)

    def _commit_waits(self, state: RunState) -> None:
        log = self.log
        for wait_id, wait in self.waits.items():
            if wait_id not in state.waits:
                state.wait_order.append(wait_id)
                state.wait_pos[wait_id] = len(log.wait_order)
                log.wait_order.append((self.run_id, wait_id))
            state.waits[wait_id] = wait
            if wait.status is WaitStatus.WAITING:
                state.waiting.add(wait_id)
            else:
                state.waiting.discard(wait_id)


_Apply = Callable[[Batch, Any, WorkflowRun], bool]

_APPLY: Final[dict[type, _Apply]] = {
    RunCreated: Batch._refused,
    RunStarted: Batch._run_started,
    RunCompleted: Batch._run_completed,
    RunFailed: Batch._run_failed,
    RunCancelled: Batch._run_cancelled,
    RunSuspended: Batch._run_suspended,
    RunResumed: Batch._run_resumed,
    RunStalled: Batch._run_stalled,
    RunUnstalled: Batch._run_unstalled,
    StateUpdated: Batch._state_updated,
    EventRaised: Batch._event_raised,
    StepCreated: Batch._step_created,
    StepStarted: Batch._step_started,
    StepCompleted: Batch._step_completed,
    StepFailed: Batch._step_failed,
    StepRetrying: Batch._step_retrying,
    StepSuspended: Batch._step_suspended,
    StepResumed: Batch._step_resumed,
    WaitCreated: Batch._wait_created,
    WaitCompleted: Batch._wait_completed,
    HookCreated: Batch._hook_created,
    HookConflict: Batch._refused,
    HookReceived: Batch._hook_received,
    HookDisposed: Batch._hook_disposed,
}
"""How each event type changes the views (every type of the event union is here)."""
_REFUSED: Final = Batch._refused

_CORRELATED: Final = frozenset(
    c
    for c in _APPLY
    if c.__struct_config__.tag in CORRELATED_EVENT_TYPES  # type: ignore[attr-defined]
)


def _apply_for(kind: type) -> _Apply:
    """The handler of an event class (a subclass of an event type gets its base's)."""
    for base in kind.__mro__:
        handler = _APPLY.get(base)
        if handler is not None:
            return handler
    raise InvalidEventError(f"unsupported event type {kind.__name__}")  # pragma: no cover
