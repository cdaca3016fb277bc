"""The workflow instance: feeds recorded events to a body one at a time, and says what to append.

The runtime builds a :class:`WorkflowInstance` for a run and calls :meth:`~WorkflowInstance.feed`
with the run's events in ``seq`` order. The instance delivers them **one per idle point**: it
runs the body's ready callbacks until the loop is idle, hands one event to the operation it
belongs to, and repeats. When the events are used up and the body is blocked, the
:class:`Progress` lists the commands (new events) the runtime must append, which it then feeds
back as stored. A replay is the same call on a fresh instance with the whole log, so the live
path and the replay path are one code path and give the same commands in any chunking.

The instance is pure: no I/O, no clock, no world. See ``docs/engine-internals.md``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from worldflow import _serde
from worldflow._registry import Registry, WorkflowDefinition
from worldflow._replay.child_contract import child_hook_token
from worldflow._replay.divergence import divergence
from worldflow._replay.durable_ops import (
    EventWaitOp,
    HookOp,
    Intent,
    Op,
    StepOp,
    TimerOp,
    decode_payload,
    iso,
)
from worldflow._replay.op_table import HookClosed, Operations, aware, operation_number
from worldflow._replay.patches import Patches
from worldflow._replay.progress import Progress, WorkflowMetadata, error_info
from worldflow.errors import (
    NondeterminismError,
    SerializationError,
)
from worldflow.worlds import (
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
    WorkflowRun,
)

__all__ = ["HookClosed", "Progress", "WorkflowInstance", "WorkflowMetadata"]

_OpT = TypeVar("_OpT", bound=Op)

# Events that act even while the run is suspended; every other event waits for run_resumed.
_THROUGH_SUSPENSION = (RunResumed, RunSuspended, RunStarted, RunCancelled, RunCompleted, RunFailed)


class WorkflowInstance(Operations):
    """One run's workflow body, driven by recorded events (see the module docstring).

    Args:
        definition: The run's workflow.
        run: The run's view; ``created_at`` fixes the ids' time part, ``last_seq`` marks the
            end of what is a replay (``is_replaying()``).
        registry: Where steps and workflows are looked up.
    """

    def __init__(
        self, definition: WorkflowDefinition, run: WorkflowRun, *, registry: Registry
    ) -> None:
        super().__init__(run.run_id, run.created_at)
        self.definition = definition
        self.registry = registry
        self.error: BaseException | None = None
        """What ended the run, if it failed."""
        self._replay_until = run.last_seq
        self._fed_seq = 0
        self._position = 0
        self._end: Intent | None = None
        self._inbox: deque[AnyEvent] = deque()
        self._held: list[AnyEvent] = []
        self._suspended = False
        self._created: RunCreated | None = None
        self._started_at: datetime | None = None
        self._root: asyncio.Task[Any] | None = None
        self._closed = False
        self._fork_clock: list[datetime] = []
        self._patches = Patches(run.patches)
        self.stalled = False
        """The log did not replay against this code (``error`` says where and how)."""

    # -- the seam ----------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the last event fed (0 before any)."""
        return self._fed_seq

    @property
    def finished(self) -> bool:
        """Whether the body has ended (or the run did)."""
        return self._finished

    def feed(self, events: Sequence[AnyEvent], *, describe: bool = True) -> Progress:
        """Deliver ``events`` (in ``seq`` order, continuing from :attr:`last_seq`).

        Events at or below :attr:`last_seq` are skipped, so overlapping pages are harmless; a
        gap in ``seq`` is a ``ValueError`` (a replay must see every event in order).
        ``describe=False`` leaves :attr:`Progress.blocked_on` empty: the text costs one line
        per pending operation, so the runtime's hot path skips it (``progress()`` has it).
        """
        if self._closed:
            raise RuntimeError(f"the workflow instance of run {self.run_id} is closed")
        run_id, fed, inbox = self.run_id, self._fed_seq, self._inbox
        try:
            for event in events:
                seq = event.seq
                if event.run_id != run_id:
                    raise ValueError(f"event for run {event.run_id!r} fed to run {run_id!r}")
                if seq <= fed:
                    if seq <= 0:
                        raise ValueError(
                            f"feed stored events (with seq), got an unstamped {event.type}"
                        )
                    continue
                if seq != fed + 1:
                    raise ValueError(
                        f"run {run_id}: expected event seq {fed + 1}, got {seq} "
                        "(feed every event, in order)"
                    )
                fed = seq
                inbox.append(event)
                if type(event) is PatchMarked:
                    self._patches.marked.add(event.name)
        finally:
            self._fed_seq = fed
        self._drive()
        return self.progress(describe=describe)

    def progress(self, *, describe: bool = True) -> Progress:
        """The current :class:`Progress` (what :meth:`feed` returned last)."""
        finished = self._finished
        open_waits = self._open_waits
        return Progress(
            commands=self._commands(),
            finished=finished,
            pending_steps=[] if finished else list(self._open_steps),
            waits=[]
            if finished or not open_waits
            else [
                (c, min(op.resume_at, self._woken.get(c, op.resume_at)))
                for c, op in open_waits.items()
                if op.resume_at
            ],
            suspended=self._suspended,
            blocked_on=[] if finished or not describe else self._blocked_on(),
            error=None if self.error is None else str(self.error),
            stalled=self.stalled,
        )

    def close(self) -> None:
        """Drop the body: cancel its tasks quietly and close its loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.shutdown()
        # The body's task keeps its last exception (a cancel's traceback holds the body's
        # frames, which hold the primitives' handles, which hold this instance): let it go.
        self._root = None
        self._release()

    # -- driving -----------------------------------------------------------------------------

    def _drive(self) -> None:
        loop = self._loop
        ready = loop._ready  # the loop's ready queue: checked per event, so read it directly
        inbox = self._inbox
        while True:
            if ready and not loop._closed:
                loop.run_until_idle()
                if self._fork_error is not None and not self.stalled:
                    self._stall(self._fork_error)
                    return
                self._after_run()
            if not inbox:
                return
            event = inbox.popleft()
            if self._suspended and not isinstance(event, _THROUGH_SUSPENSION):
                self._held.append(event)
                continue
            when = event.created_at
            if self._fork_clock and 1 < event.seq <= len(self._fork_clock) + 1:
                when = self._fork_clock[event.seq - 2]  # a copy: the source's time
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when > self._now:
                self._now = when
            if event.seq > self._position:
                self._position = event.seq
            kind = type(event)
            deliver = _DELIVER.get(kind) or _deliver_for(kind)
            try:
                deliver(self, event)
            except NondeterminismError as exc:
                # Also after the body returned, as long as its outcome is not in the log: a
                # log that goes on where the code stopped is a divergence, not a result.
                end = self._end
                if not self._finished or (
                    end is not None
                    and not end.recorded
                    and not isinstance(self.error, NondeterminismError)
                ):
                    self._stall(exc)
                    return

    def _after_run(self) -> None:
        if self._finished:
            return
        root = self._root
        violation = self._loop.violation
        if violation is not None:
            if root is not None and root.done() and not root.cancelled():
                root.exception()  # retrieved: the violation is what the run records
            self._end_failed(violation)
            return
        if root is None or not root.done():
            return
        if root.cancelled():
            self._end_failed(asyncio.CancelledError("the workflow body was cancelled"))
            return
        exc = root.exception()
        if exc is not None:
            self._end_failed(exc)
            return
        try:
            output = _serde.encode(root.result())
        except SerializationError as error:
            self._end_failed(
                SerializationError(f"the workflow's return value cannot be recorded: {error}")
            )
            return
        self._end_with(RunCompleted(run_id=self.run_id, output=output))

    def _end_failed(self, exc: BaseException) -> None:
        self.error = exc
        self._end_with(RunFailed(run_id=self.run_id, error=error_info(exc)))

    def _end_with(self, event: AnyEvent) -> None:
        self._finished = True
        for intent in self._intents:
            if intent.kind == "create" and intent.op is not None:
                intent.op.wanted = False
        self._end = Intent("end", event)
        self._intents.append(self._end)
        self._loop.shutdown()

    def _stall(self, exc: NondeterminismError) -> None:
        """The log parts from the code: stop, owe nothing, say so (the run is not failed:
        other code may replay it)."""
        self.error = exc
        self.stalled = True
        self._end = None
        self._inbox.clear()
        self._terminate()

    def _terminate(self) -> None:
        """The log ended the run (cancelled, or failed by the runtime): stop, owe nothing."""
        self._finished = True
        self._intents = []
        self._state_intents.clear()
        self._loop.shutdown()

    # -- commands and progress ---------------------------------------------------------------

    def _commands(self) -> list[AnyEvent]:
        if self._suspended:
            return []
        intents = self._intents
        if not intents:
            return []
        # Owed: not recorded, and for a creation, its op neither created nor given up.
        keep: list[Intent] = []
        out: list[AnyEvent] = []
        for intent in intents:
            if intent.recorded:
                continue
            if intent.kind == "create":
                op = intent.op
                assert op is not None
                if op.created or not op.wanted:
                    continue
            keep.append(intent)
            out.append(intent.event)
        self._intents = keep
        return out

    # -- delivery ----------------------------------------------------------------------------

    # One method per event type (dispatched by :data:`_DELIVER`).

    def _on_run_started(self, event: RunStarted) -> None:
        if self._started_at is None:
            self._started_at = aware(event.created_at)
        if self._root is None and self._created is not None and not self._finished:
            self._start_body(self._created)

    def _on_run_ended(self, event: RunCompleted | RunFailed | RunCancelled) -> None:
        if self._finished:
            if self._end is not None:
                self._end.recorded = True
        elif isinstance(event, RunCompleted):
            # Only the body's own command writes run_completed: a replay that has not
            # returned by this point took another path.
            raise self._diverged(event, None, "returned")
        else:
            self._terminate()

    def _on_run_suspended(self, event: RunSuspended) -> None:
        self._suspended = True

    def _on_run_resumed(self, event: RunResumed) -> None:
        self._suspended = False
        self._inbox.extendleft(reversed(self._held))
        self._held = []

    def _on_step_attempt(self, event: StepStarted | StepInterrupted) -> None:
        self._step_op(event).attempts += isinstance(event, StepStarted)

    def _on_step_retrying(self, event: StepRetrying) -> None:
        self._step_op(event).retry_after = event.retry_after

    def _on_step_woken(self, event: StepWoken) -> None:
        op = self._ops.get(event.correlation_id or "")
        if isinstance(op, StepOp):  # woken early (Client.wake_step): no more backing off
            op.retry_after = None

    def _on_step_suspended(self, event: StepSuspended) -> None:
        self._step_op(event).suspended = True

    def _on_step_resumed(self, event: StepResumed) -> None:
        op = self._step_op(event)
        op.suspended = False
        op.resume_data = event.data

    def _on_step_completed(self, event: StepCompleted) -> None:
        op = self._step_op(event)
        self._step_ended(op)
        if not op.done:
            self._op_done(op)
            decode_payload(op.future, event.result)

    def _on_step_failed(self, event: StepFailed) -> None:
        op = self._step_op(event)
        self._step_ended(op)
        if not op.done:
            self._op_done(op)
            if not op.future.done():  # cancelled when the body ended first
                op.future.set_exception(self._step_failure(op, event.error))

    def _on_run_created(self, event: RunCreated) -> None:
        if event.workflow_name != self.definition.name:
            raise ValueError(
                f"run {self.run_id} is of workflow {event.workflow_name!r}, but this instance "
                f"runs {self.definition.name!r}"
            )
        self._created = event
        self._state = event.initial_state
        self.seed_tokens(event.seed)
        if event.fork is not None:
            self.fork_from(event.fork)
            self._fork_clock = event.fork.clock

    def _start_body(self, created: RunCreated) -> None:
        try:
            args, kwargs = self.definition.decode_input(created.input)
        except (TypeError, SerializationError) as exc:
            self._end_failed(exc)
            return
        coro = self.definition.fn(*args, **kwargs)
        self._root = self._loop.create_task(
            coro,
            name=f"workflow {self.definition.name} {self.run_id}",
            context=contextvars.Context(),
        )

    def _diverged(self, event: AnyEvent, op: Op | None, cause: str) -> NondeterminismError:
        if op is not None:
            current = op.describe()
            number: int | None = op.number
        elif self._finished:
            current = "nothing: the workflow body has already ended at this point"
            number = self._number_of(event.correlation_id)
        else:
            waiting = ", ".join(self._blocked_on()) or "nothing"
            current = (
                f"nothing at this point: the code has started {self._count} operation(s) and "
                f"is waiting on {waiting}"
            )
            number = self._number_of(event.correlation_id)
        return divergence(
            run_id=self.run_id,
            workflow_name=self.definition.name,
            event=event,
            number=number,
            current=current,
            cause=cause,
        )

    def _number_of(self, corr: str | None) -> int | None:
        return operation_number(corr, self._id_base) if corr else None

    def _on_step_created(self, event: StepCreated) -> None:
        # The common creation, checked without the general path's dispatch on the kind.
        op = self._ops.get(event.correlation_id)
        if type(op) is not StepOp:
            self._on_created(event)  # missing, or of another kind: it says which
            return
        if op.step_name != event.step_name:
            raise self._diverged(event, op, "renamed")
        if op.input is not event.input and bytes(op.input) != bytes(event.input):
            raise self._diverged(event, op, "input")
        if op.created:
            return
        op.created = True
        op.created_seq = event.seq
        if not op.terminal:
            self._open_steps[op.corr] = op

    def _on_created(self, event: StepCreated | WaitCreated | HookCreated | HookConflict) -> None:
        corr = event.correlation_id
        # The Nth operation has the Nth ULID whatever its kind: a recorded step whose ULID
        # belongs to a hook of the current code is a change of kind, not a missing operation.
        op = self._ops.get(corr) or self._by_ulid.get(corr.partition("_")[2])
        if op is None:
            raise self._diverged(event, None, "missing")
        match event:
            case StepCreated():
                if not isinstance(op, StepOp):
                    raise self._diverged(event, op, "kind")
                if op.step_name != event.step_name:
                    raise self._diverged(event, op, "renamed")
                if op.input is not event.input and bytes(op.input) != bytes(event.input):
                    raise self._diverged(event, op, "input")
            case WaitCreated(event_name=None):
                if not isinstance(op, TimerOp):
                    raise self._diverged(event, op, "kind")
                if event.resume_at is not None:
                    op.resume_at = aware(event.resume_at)  # the recorded time stands
            case WaitCreated():
                if not isinstance(op, EventWaitOp):
                    raise self._diverged(event, op, "kind")
                if op.event_name != event.event_name:
                    raise self._diverged(event, op, "changed")
                op.resume_at = None if event.resume_at is None else aware(event.resume_at)
            case HookCreated() | HookConflict():
                if not isinstance(op, HookOp):
                    raise self._diverged(event, op, "kind")
                if op.token != event.token:
                    raise self._diverged(event, op, "changed")
        if op.created:
            return
        op.created = True
        op.created_seq = event.seq
        if isinstance(op, StepOp):
            if not op.terminal:
                self._open_steps[op.corr] = op
        elif isinstance(op, (TimerOp, EventWaitOp)):
            if op.resume_at is not None and not op.closing and not op.done:
                self._open_waits[op.corr] = op
        elif isinstance(event, HookConflict):
            op.conflicted = True
            op.conflict_run_id = event.conflicting_run_id
            self._op_done(op)
            while op.awaiters:
                future = op.awaiters.popleft()
                if not future.done():
                    future.set_exception(self._conflict_error(op))
        if op.closing:
            self._queue_close(op)

    def _step_op(self, event: AnyEvent) -> StepOp:
        return self._recorded(event, StepOp)

    def _recorded(self, event: AnyEvent, kind: type[_OpT]) -> _OpT:
        """The operation of kind ``kind`` whose creation the log recorded, that ``event`` is
        about; anything else is a corrupt log."""
        op = self._ops.get(event.correlation_id or "")
        if not isinstance(op, kind) or not op.created:
            raise self._diverged(event, op, "corrupt")
        return op

    def _step_ended(self, op: StepOp) -> None:
        op.terminal = True
        op.suspended = False
        self._open_steps.pop(op.corr, None)

    def _on_wait_woken(self, event: WaitWoken) -> None:
        """``wake``: the timer is due at the event's time; ``wait_completed`` still resumes
        the body (the runtime appends it once due, and a replay reads the same two events)."""
        op = self._ops.get(event.correlation_id)
        if isinstance(op, TimerOp) and not op.done:
            self._woken[op.corr] = event.created_at

    def _on_wait_completed(self, event: WaitCompleted) -> None:
        op = self._ops.get(event.correlation_id)
        if not isinstance(op, (TimerOp, EventWaitOp)) or not op.created:
            raise self._diverged(event, op, "corrupt")
        self._open_waits.pop(op.corr, None)
        if op.close_intent is not None:
            op.close_intent.recorded = True
        op.closing = True  # the log closed it: nothing more is owed
        if op.done:
            return
        self._op_done(op)
        if op.future is not None and op.future.done():
            pass  # cancelled when the body ended first: nothing left to tell it
        elif isinstance(op, EventWaitOp):
            op.future.set_exception(
                TimeoutError(f"no event {op.event_name!r} arrived by {iso(op.resume_at)}")
            )
        elif op.future is not None:
            op.future.set_result(None)
        elif op.handle is not None:
            self._timers.pop(id(op.handle), None)
            self._loop.fire_timer(op.handle)

    def _hook_op(self, event: AnyEvent) -> HookOp:
        return self._recorded(event, HookOp)

    def _on_hook_received(self, event: HookReceived) -> None:
        self._to_hook(self._hook_op(event), event.payload)

    def _on_child_ended(self, event: ChildEnded) -> None:
        op = self._hook_op(event)
        if op.token != child_hook_token(event.child_run_id):
            raise self._diverged(event, op, "corrupt")
        self._to_hook(op, event.outcome)

    def _on_hook_disposed(self, event: HookDisposed) -> None:
        op = self._hook_op(event)
        if op.close_intent is not None:
            op.close_intent.recorded = True
        op.closing = True
        if not op.disposed:
            self._hook_closed(op)

    def _on_event_raised(self, event: EventRaised) -> None:
        waiters = self._event_waits.get(event.name)
        while waiters:
            op = waiters.popleft()
            if not op.done:
                self._op_done(op)
                if not op.created:
                    op.wanted = False
                self._close(op)
                decode_payload(op.future, event.payload)
                return
        self._events.setdefault(event.name, deque()).append(event.payload)

    def _on_state_updated(self, event: StateUpdated) -> None:
        queue = self._state_intents
        while queue and queue[0].recorded:
            queue.popleft()
        if not queue:
            current = "no set_state() call at this point"
            raise divergence(
                run_id=self.run_id,
                workflow_name=self.definition.name,
                event=event,
                number=None,
                current=current,
                cause="state",
            )
        intent = queue.popleft()
        wanted = intent.event
        assert isinstance(wanted, StateUpdated)
        if bytes(wanted.state) != bytes(event.state):
            raise divergence(
                run_id=self.run_id,
                workflow_name=self.definition.name,
                event=event,
                number=None,
                current=f"set_state({bytes(wanted.state).decode('utf-8', 'replace')[:160]})",
                cause="state",
            )
        intent.recorded = True

    # -- versioning --------------------------------------------------------------------------

    def patched(self, name: str) -> bool:
        """Whether this run takes the new branch of patch ``name`` (see ``worldflow.patched``
        and :meth:`Patches.decide`)."""
        decided, owed = self._patches.decide(name, replaying=self.is_replaying())
        if owed:
            self._mark(name)
        return decided

    def deprecate_patch(self, name: str) -> None:
        """Patch ``name``'s old branch is gone (see :meth:`Patches.deprecate`)."""
        if self._patches.deprecate(name, replaying=self.is_replaying()):
            self._mark(name)

    def _mark(self, name: str) -> None:
        if self._finished:
            return
        intent = Intent("patch", PatchMarked(run_id=self.run_id, name=name))
        self._intents.append(intent)
        self._patches.owe(name, intent)

    def _on_patch_marked(self, event: PatchMarked) -> None:
        intent = self._patches.recorded(event.name)
        if intent is not None:
            intent.recorded = True

    def is_replaying(self) -> bool:
        """Whether the body is re-running code it ran before (the log goes further)."""
        return self._position < self._replay_until

    def metadata(self) -> WorkflowMetadata:
        """The run's metadata, from its ``run_created`` and first ``run_started``."""
        created = self._created
        assert created is not None  # the body only runs after run_created
        return WorkflowMetadata.of(self.definition.name, created, self._started_at)


_Deliver = Callable[[WorkflowInstance, Any], None]


def _ignore(instance: WorkflowInstance, event: Any) -> None:
    """Not an event type this instance acts on."""


_DELIVER: dict[type, _Deliver] = {
    RunCreated: WorkflowInstance._on_run_created,
    RunStarted: WorkflowInstance._on_run_started,
    RunCompleted: WorkflowInstance._on_run_ended,
    RunFailed: WorkflowInstance._on_run_ended,
    RunCancelled: WorkflowInstance._on_run_ended,
    RunSuspended: WorkflowInstance._on_run_suspended,
    RunResumed: WorkflowInstance._on_run_resumed,
    StepCreated: WorkflowInstance._on_step_created,
    WaitCreated: WorkflowInstance._on_created,
    HookCreated: WorkflowInstance._on_created,
    HookConflict: WorkflowInstance._on_created,
    StepStarted: WorkflowInstance._on_step_attempt,
    StepInterrupted: WorkflowInstance._on_step_attempt,
    StepRetrying: WorkflowInstance._on_step_retrying,
    StepWoken: WorkflowInstance._on_step_woken,
    StepSuspended: WorkflowInstance._on_step_suspended,
    StepResumed: WorkflowInstance._on_step_resumed,
    StepCompleted: WorkflowInstance._on_step_completed,
    StepFailed: WorkflowInstance._on_step_failed,
    WaitCompleted: WorkflowInstance._on_wait_completed,
    WaitWoken: WorkflowInstance._on_wait_woken,
    HookReceived: WorkflowInstance._on_hook_received,
    ChildEnded: WorkflowInstance._on_child_ended,
    HookDisposed: WorkflowInstance._on_hook_disposed,
    EventRaised: WorkflowInstance._on_event_raised,
    StateUpdated: WorkflowInstance._on_state_updated,
    PatchMarked: WorkflowInstance._on_patch_marked,
    RunStalled: _ignore,  # the runtime's notes about the log, nothing the body sees
    RunUnstalled: _ignore,
}
"""How each event type is delivered (by exact class: one lookup per event)."""


def _deliver_for(kind: type) -> _Deliver:
    """The delivery of an event class that is not in :data:`_DELIVER` (a subclass)."""
    for base in kind.__mro__:
        found = _DELIVER.get(base)
        if found is not None:
            return found
    return _ignore
