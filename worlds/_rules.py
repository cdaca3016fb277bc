"""The contract's rules: one engine that every world applies to every appended batch.

The rules are listed in ``worldflow.worlds._protocol``'s docstring and checked by the
conformance suite. :class:`Batch` applies one batch to an *overlay* of a run's stored state,
reading that state through a :class:`RunView` (the run, a step, a hook, a wait, who holds a
token), so a refused event leaves nothing behind and the world decides how to store what the
batch produced: the memory world writes it into its dicts, the file world first to disk,
a database world in one transaction. Every world therefore answers alike by construction.

Each event is validated first (``worldflow.worlds._validation``: every field's type and
size), so nothing a world cannot read back is ever stored.

A *replay* batch (``replay=True``) re-applies events a world stored earlier (the file world's
logs at open): they are already stamped and checked, so they keep their ``seq`` (which must
follow on), their ids and times, and whether a ``hook_created`` got its token was decided
when it was appended (the log holds ``hook_created`` or ``hook_conflict``), so a replay never
asks who holds a token.

Appending is the hot path of every workflow, so events are dispatched by their exact class
(one dict lookup, not a chain of ``isinstance``) and each view is replaced once per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final, Protocol

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
from worldflow.worlds._children import check_child_outcome
from worldflow.worlds._events import (
    EPOCH,
    AnyEvent,
    ChildEnded,
    EventRaised,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    PatchMarked,
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
    StepInterrupted,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    StepWoken,
    WaitCompleted,
    WaitCreated,
    WaitWoken,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._records import (
    RESERVED_TOKEN_PREFIX,
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
from worldflow.worlds._validation import validate_event

__all__ = ["IN_FLIGHT_RESULT_TYPES", "Batch", "RunView"]

CHILD_TOKEN_PREFIX: Final = f"{RESERVED_TOKEN_PREFIX}child:"
"""The tokens of hooks that wait for a child's outcome (``child_ended`` only)."""

_replace = msgspec.structs.replace

# What a running step may still record after its run ended: the outcome of its attempt.
IN_FLIGHT_RESULT_TYPES: Final = frozenset(
    {"step_completed", "step_failed", "step_retrying", "step_suspended"}
)


class RunView(Protocol):
    """What the rules read of one run's stored state (before the batch), and of the world.

    Every method is a lookup a world answers from its indexes (a dict access in memory, a
    primary-key read in a database); the rules never scan.
    """

    def run(self) -> WorkflowRun | None:
        """The run's view, or ``None`` if the world has no such run."""
        ...

    def step(self, step_id: str) -> Step | None:
        """One of the run's steps."""
        ...

    def hook(self, hook_id: str) -> Hook | None:
        """One of the run's hooks."""
        ...

    def wait(self, wait_id: str) -> Wait | None:
        """One of the run's waits."""
        ...

    def hook_id_used(self, hook_id: str) -> bool:
        """Whether a ``hook_created`` (or ``hook_conflict``) of the run used this hook id."""
        ...

    def token_holder(self, token: str) -> str | None:
        """The run whose live hook holds ``token`` (any run of the world), if any."""
        ...

    def live_hook_ids(self) -> Iterable[str]:
        """The ids of the run's active hooks (released when it ends)."""
        ...

    def waiting_wait_ids(self) -> Iterable[str]:
        """The ids of the run's waits still waiting (completed when it ends)."""
        ...

    def other_run(self, run_id: str) -> WorkflowRun | None:
        """Another run of the world as stored (a child whose end the run is told of), or
        ``None`` if the world has no such run. A terminal run's answer never changes, so a
        world may answer from what it committed or read earlier."""
        ...


class Batch:
    """One append in progress: events applied to an overlay of the run's state.

    Args:
        view: The run's stored state as the world holds it before this batch.
        run_id: The run appended to.
        now: The time the batch is stamped with.
        replay: Re-apply stored events (see the module docstring) instead of new ones.
        stamped: Keep a ``created_at`` the caller set on an event (an append with
            ``expected_seq``: the engine fed the events to the body before appending them,
            so their time is already part of what the body saw); others get ``now``. The
            batch's own time (the views it changes: a new run's ``created_at``, a step's,
            ``updated_at``) is then its first stored event's, as a replay of the stored
            batch gives them (the file world's logs at open): an engine-started run's
            ``created_at`` is the time its body was fed.

    Call :meth:`add` for each event (it raises on the first refused one; the overlay is then
    simply dropped), then store what the batch holds: ``run`` (the run's view after it, or
    ``None`` if it created nothing), ``events`` (stamped, in order), ``steps``, ``hooks`` and
    ``waits`` (the views it changed), ``claimed`` (hook ids it used) and ``tokens`` (token ->
    hook id given by it, or ``None`` for a token it freed).
    """

    __slots__ = (
        "base_run",
        "claimed",
        "clock_now",
        "events",
        "hooks",
        "now",
        "replay",
        "run",
        "run_id",
        "seq",
        "stamped",
        "steps",
        "tokens",
        "view",
        "waits",
    )

    def __init__(
        self,
        view: RunView,
        run_id: str,
        now: datetime,
        *,
        replay: bool = False,
        stamped: bool = False,
    ) -> None:
        self.view = view
        self.stamped = stamped
        self.run_id = run_id
        self.now = self.clock_now = now
        self.replay = replay
        run = self.run = self.base_run = view.run()
        self.seq = run.last_seq if run is not None else 0
        self.events: list[AnyEvent] = []
        self.steps: dict[str, Step] = {}
        self.hooks: dict[str, Hook] = {}
        self.waits: dict[str, Wait] = {}
        self.claimed: set[str] = set()
        self.tokens: dict[str, str | None] = {}  # token -> hook id of this run, None: freed

    @property
    def was_terminal(self) -> bool:
        """Whether the run had ended before this batch."""
        run = self.base_run
        return run is not None and run.status in TERMINAL_RUN_STATUSES

    def claimed_tokens(self) -> list[str]:
        """The tokens this batch gives to new hooks."""
        return [token for token, hook_id in self.tokens.items() if hook_id is not None]

    # -- lookups through the overlay -----------------------------------------------------

    def _step(self, step_id: str) -> Step | None:
        step = self.steps.get(step_id)
        return step if step is not None else self.view.step(step_id)

    def _hook(self, hook_id: str) -> Hook | None:
        hook = self.hooks.get(hook_id)
        return hook if hook is not None else self.view.hook(hook_id)

    def _wait(self, wait_id: str) -> Wait | None:
        wait = self.waits.get(wait_id)
        return wait if wait is not None else self.view.wait(wait_id)

    def _token_holder(self, token: str) -> str | None:
        """The run whose live hook holds ``token``, if any."""
        if token in self.tokens:
            return self.run_id if self.tokens[token] is not None else None
        return self.view.token_holder(token)

    # -- applying events -----------------------------------------------------------------

    def add(self, event: object) -> None:
        """Apply one event, or raise the error the module rules give for it."""
        if self.replay:
            self._replay(event)
            return
        validate_event(event, self.run_id)  # raises the error that teaches
        kind = type(event)
        apply = _APPLY.get(kind) or _apply_for(kind)
        ev: AnyEvent = event  # type: ignore[assignment]  # checked above
        if self.stamped and not self.events:
            # Until an event is stored, the next one may be the batch's first: its time is
            # the batch's (a replay takes the first stored event's time for the views).
            self.now = self.clock_now if ev.created_at == EPOCH else _stamp(ev)
        self._apply(ev, apply)

    def _replay(self, event: object) -> None:
        if isinstance(event, HookConflict):
            self.claimed.add(event.correlation_id)  # the id is used, the token was not given
            self._store(event)
            return
        ev: AnyEvent = event  # type: ignore[assignment]  # decoded by the strict decoder
        stored = len(self.events)
        self._apply(ev, _APPLY.get(type(ev)) or _apply_for(type(ev)))
        if len(self.events) == stored:
            raise InvalidEventError(f"the rules treat {ev.type} as a no-op")

    def _apply(self, ev: AnyEvent, apply: _Apply) -> None:
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
                forked_from=ev.forked_from,
                forked_from_step=None if ev.fork is None else ev.fork.step_id,
                start_at=ev.start_at,
                priority=ev.priority,
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
        if self.replay:
            if ev.seq != self.seq:
                raise InvalidEventError(f"event seq {ev.seq} where {self.seq} was due")
            self.events.append(ev)
            return
        # An event's own time: the caller's in a stamped batch, else the world's clock
        # (the views' time, `now`, is the batch's first event's; see the class docstring).
        at = self.clock_now
        if self.stamped and ev.created_at != EPOCH:
            at = _stamp(ev)
        self.events.append(_replace(ev, seq=self.seq, event_id=new_id("evnt"), created_at=at))

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

    def _patch_marked(self, ev: PatchMarked, run: WorkflowRun) -> bool:
        if ev.name not in run.patches:
            self.run = _replace(run, patches=[*run.patches, ev.name])
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
        lost = step.lost_attempts + (step.status is StepStatus.RUNNING)  # no outcome: a crash
        self.steps[step_id] = _replace(
            step,
            status=StepStatus.RUNNING,
            attempt=step.attempt + 1,
            lost_attempts=lost,
            started_at=step.started_at or now,
            retry_after=None,
            updated_at=now,
        )
        return True

    def _step_interrupted(self, ev: StepInterrupted, run: WorkflowRun) -> bool:
        step = self._open_step(ev.correlation_id)
        if step.status is not StepStatus.RUNNING:
            return False  # the attempt's outcome is in already
        self.steps[ev.correlation_id] = _replace(
            step,
            status=StepStatus.PENDING,
            interrupted_attempts=step.interrupted_attempts + 1,
            updated_at=self.now,
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

    def _step_woken(self, ev: StepWoken, run: WorkflowRun) -> bool:
        step_id = ev.correlation_id
        step = self._open_step(step_id)
        if step.status is not StepStatus.PENDING or step.retry_after is None:
            doing = (
                "waiting for its first attempt"
                if step.status is StepStatus.PENDING
                else step.status.value
            )
            raise EntityConflictError(
                f"step {step_id!r} is {doing}, not backing off: only a step waiting to retry "
                "a failed attempt can be retried now"
            )
        self.steps[step_id] = _replace(step, retry_after=None, updated_at=self.now)
        return True

    def _wait_woken(self, ev: WaitWoken, run: WorkflowRun) -> bool:
        wait_id = ev.correlation_id
        wait = self._wait(wait_id)
        if wait is None:
            raise NotFoundError(f"run {run.run_id!r} has no wait {wait_id!r}")
        if wait.status is WaitStatus.COMPLETED:
            raise EntityConflictError(f"wait {wait_id!r} has already completed")
        if wait.event_name is not None or wait.resume_at is None:
            raise EntityConflictError(
                f"wait {wait_id!r} waits for event {wait.event_name!r}, not a sleep: raise "
                "the event instead of waking it"
            )
        self.waits[wait_id] = _replace(wait, resume_at=min(wait.resume_at, self.now))
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
        if hook.token.startswith(CHILD_TOKEN_PREFIX):
            raise InvalidEventError(
                f"hook {hook.hook_id!r} of run {run.run_id!r} waits for a child workflow's "
                "outcome, which only the engine sends (child_ended); hook_received cannot "
                "go to it"
            )
        self.hooks[hook.hook_id] = _replace(hook, received_count=hook.received_count + 1)
        return True

    def _child_ended(self, ev: ChildEnded, run: WorkflowRun) -> bool:
        hook = self._live_hook(ev.correlation_id, run)
        child_id = ev.child_run_id
        if hook.token != CHILD_TOKEN_PREFIX + child_id:
            raise InvalidEventError(
                f"child_ended for child run {child_id!r} went to hook {hook.hook_id!r} "
                f"of run {run.run_id!r}, whose token is {hook.token!r}"
            )
        # Stored logs were checked when appended (and may hold a second report of one child
        # from before this rule); a fork's first batch copies its source's recorded outcomes
        # for children it reuses, whose ids it maps (no such run exists).
        if not self.replay and not (self.base_run is None and run.forked_from_step):
            if hook.received_count:
                raise EntityConflictError(
                    f"run {run.run_id!r} was told already that its child run {child_id!r} "
                    "ended: the first child_ended wins"
                )
            check_child_outcome(self.view.other_run(child_id), ev, run)
        self.hooks[hook.hook_id] = _replace(hook, received_count=hook.received_count + 1)
        return True

    def _hook_disposed(self, ev: HookDisposed, run: WorkflowRun) -> bool:
        self._dispose(self._live_hook(ev.correlation_id, run))
        return True

    def _hook_created(self, ev: HookCreated, run: WorkflowRun) -> bool:
        hook_id, token = ev.correlation_id, ev.token
        if hook_id in self.claimed or self.view.hook_id_used(hook_id):
            raise EntityConflictError(f"hook {hook_id!r} of run {self.run_id!r} exists")
        self.claimed.add(hook_id)
        holder = None if self.replay else self._token_holder(token)
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
        view = self.view
        hook_ids = dict.fromkeys([*view.live_hook_ids(), *self.hooks])
        for hook_id in hook_ids:
            hook = self._hook(hook_id)
            if hook is not None and hook.status is HookStatus.ACTIVE:
                self._dispose(hook)
        wait_ids = dict.fromkeys([*view.waiting_wait_ids(), *self.waits])
        for wait_id in wait_ids:
            wait = self._wait(wait_id)
            if wait is not None and wait.status is WaitStatus.WAITING:
                self.waits[wait_id] = _replace(
                    wait, status=WaitStatus.COMPLETED, completed_at=self.now
                )


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
    PatchMarked: Batch._patch_marked,
    StepCreated: Batch._step_created,
    StepStarted: Batch._step_started,
    StepCompleted: Batch._step_completed,
    StepFailed: Batch._step_failed,
    StepRetrying: Batch._step_retrying,
    StepInterrupted: Batch._step_interrupted,
    StepSuspended: Batch._step_suspended,
    StepResumed: Batch._step_resumed,
    StepWoken: Batch._step_woken,
    WaitCreated: Batch._wait_created,
    WaitWoken: Batch._wait_woken,
    WaitCompleted: Batch._wait_completed,
    HookCreated: Batch._hook_created,
    HookConflict: Batch._refused,
    HookReceived: Batch._hook_received,
    ChildEnded: Batch._child_ended,
    HookDisposed: Batch._hook_disposed,
}
"""How each event type changes the views (every type of the event union is here)."""
_REFUSED: Final = Batch._refused


def _stamp(ev: AnyEvent) -> datetime:
    """The ``created_at`` a caller set on an event of a stamped batch, checked."""
    at = ev.created_at
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidEventError(
            f"{ev.type}.created_at must be a datetime with a time zone, not {at!r}"
        )
    return at


def _apply_for(kind: type) -> _Apply:
    """The handler of an event class (a subclass of an event type gets its base's)."""
    for base in kind.__mro__:
        handler = _APPLY.get(base)
        if handler is not None:
            return handler
    raise InvalidEventError(f"unsupported event type {kind.__name__}")  # pragma: no cover
