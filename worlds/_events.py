"""The events of a run's log: one tagged union, one shared decoder.

Every event carries ``run_id``, ``seq`` (dense per run, from 1), ``event_id`` (``evnt_`` +
ULID), ``created_at`` and, for events about one step, hook or wait, its ``correlation_id``.
The caller of ``World.append`` leaves ``seq``, ``event_id`` and ``created_at`` at their
defaults; the world stamps them (see :func:`stamp`).

Schema evolution: a new field gets a default; a tag never changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Final, TypeAlias

import msgspec

from worldflow.errors import InvalidEventError
from worldflow.worlds._records import NULL, ChildOutcome, ErrorInfo, ForkPoint, Payload

__all__ = [
    "CORRELATED_EVENT_TYPES",
    "CREATION_EVENT_TYPES",
    "EVENT_TYPES",
    "RUN_TERMINAL_EVENT_TYPES",
    "STEP_RESULT_EVENT_TYPES",
    "AnyEvent",
    "ChildEnded",
    "Event",
    "EventRaised",
    "HookConflict",
    "HookCreated",
    "HookDisposed",
    "HookReceived",
    "PatchMarked",
    "RunCancelled",
    "RunCompleted",
    "RunCreated",
    "RunFailed",
    "RunResumed",
    "RunStalled",
    "RunStarted",
    "RunSuspended",
    "RunUnstalled",
    "StateUpdated",
    "StepCompleted",
    "StepCreated",
    "StepFailed",
    "StepInterrupted",
    "StepResumed",
    "StepRetrying",
    "StepStarted",
    "StepSuspended",
    "StepWoken",
    "WaitCompleted",
    "WaitCreated",
    "WaitWoken",
    "check_event",
    "decode_event",
    "decode_events",
    "encode_event",
    "stamp",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Fields shared by every event. Not itself an event: use one of the subclasses."""

    run_id: str
    seq: int = 0
    event_id: str = ""
    created_at: datetime = EPOCH
    correlation_id: str | None = None

    @property
    def type(self) -> str:
        """The event's tag, e.g. ``"step_completed"``."""
        return self.__struct_config__.tag  # type: ignore[return-value]


# -- run events ------------------------------------------------------------------------------


class RunCreated(Event, tag="run_created", frozen=True):
    """A run was started: which workflow, with what input, for whom."""

    workflow_name: str
    input: Payload
    resource_id: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    initial_state: Payload = NULL
    parent_run_id: str | None = None
    seed: str = ""
    """A secret drawn at start: it seeds the run's default hook tokens, so they replay the
    same yet cannot be guessed from the run id."""
    trace_context: dict[str, str] = msgspec.field(default_factory=dict)
    """The W3C trace context (``traceparent``) of the span that started the run, so the
    run's spans join the starter's trace (empty without tracing)."""
    forked_from: str | None = None
    """The run this one was forked (or rerun) from: lineage only the client writes."""
    fork: ForkPoint | None = None
    """For a fork from a step: where it left the source and what its replay needs."""
    start_at: datetime | None = None
    """Not before this time (``start(..., delay=)``): engines start the run once it is due."""
    priority: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] = 0
    """Higher first among runs waiting for a flow-control permit (a 32-bit int)."""
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class RunStarted(Event, tag="run_started", frozen=True):
    """A worker began driving the run (idempotent while running)."""


class RunCompleted(Event, tag="run_completed", frozen=True):
    """The workflow returned ``output``."""

    output: Payload


class RunFailed(Event, tag="run_failed", frozen=True):
    """The workflow raised ``error``."""

    error: ErrorInfo
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class RunCancelled(Event, tag="run_cancelled", frozen=True):
    """The run was cancelled (Dapr: terminated); ``output`` is kept as its output."""

    reason: str | None = None
    output: Payload = NULL
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class RunSuspended(Event, tag="run_suspended", frozen=True):
    """The run was paused: no new work is scheduled until ``run_resumed``."""

    reason: str | None = None
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class RunResumed(Event, tag="run_resumed", frozen=True):
    """A paused run continues."""

    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class RunStalled(Event, tag="run_stalled", frozen=True):
    """Replaying the run met code that does not match its log: no engine drives it until
    code that replays it is found (``run_unstalled``) or it is failed for good.

    ``error`` is the :class:`~worldflow.NondeterminismError` (its message shows both sides);
    ``position`` the ``seq`` of the recorded event where the code parted from the log,
    ``recorded`` what the log says there, ``current`` what the code did instead.
    """

    error: ErrorInfo
    position: int = 0
    recorded: str = ""
    current: str = ""


class RunUnstalled(Event, tag="run_unstalled", frozen=True):
    """A stalled run replayed against the code now deployed: it goes on."""


# -- step events -----------------------------------------------------------------------------


class StepCreated(Event, tag="step_created", frozen=True):
    """The workflow called step ``step_name`` with ``input`` (encoded bound arguments)."""

    correlation_id: str
    step_name: str
    input: Payload


class StepStarted(Event, tag="step_started", frozen=True):
    """A worker began an attempt of the step."""

    correlation_id: str


class StepCompleted(Event, tag="step_completed", frozen=True):
    """The step returned ``result``; the first completion wins."""

    correlation_id: str
    result: Payload


class StepFailed(Event, tag="step_failed", frozen=True):
    """The step failed for good (fatal error, or retries used up)."""

    correlation_id: str
    error: ErrorInfo


class StepRetrying(Event, tag="step_retrying", frozen=True):
    """An attempt failed and the step will run again, not before ``retry_after``."""

    correlation_id: str
    error: ErrorInfo
    retry_after: datetime | None = None


class StepInterrupted(Event, tag="step_interrupted", frozen=True):
    """The engine running the attempt stopped (a clean exit, a deploy) before it ended; the
    attempt does not count against the step's ``max_retries`` and runs again."""

    correlation_id: str
    reason: str = ""


class StepSuspended(Event, tag="step_suspended", frozen=True):
    """The step called ``suspend(payload)``; it waits for ``resume_step``."""

    correlation_id: str
    payload: Payload = NULL


class StepResumed(Event, tag="step_resumed", frozen=True):
    """``resume_step`` sent ``data`` to a suspended step; it runs again."""

    correlation_id: str
    data: Payload = NULL
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class StepWoken(Event, tag="step_woken", frozen=True):
    """``retry_now``: a step backing off after a failed attempt may start its next attempt now
    (its ``retry_after`` is cleared). It carries no result and no input: the step still runs
    its code, and only the engine records what the attempt gives. ``actor`` says who asked."""

    correlation_id: str
    actor: str | None = None


# -- waits -----------------------------------------------------------------------------------


class WaitCreated(Event, tag="wait_created", frozen=True):
    """A durable timer (``resume_at``) or a wait for the named event ``event_name``."""

    correlation_id: str
    resume_at: datetime | None = None
    event_name: str | None = None


class WaitWoken(Event, tag="wait_woken", frozen=True):
    """``wake``: a durable timer (``sleep``) is due now instead of at its ``resume_at``.

    It does not complete the wait: the engine that drives the run reads it on replay as the
    timer's new due time (this event's ``created_at``) and appends ``wait_completed`` itself,
    so a replay of the log resumes the body at the same point. ``actor`` says who asked."""

    correlation_id: str
    actor: str | None = None


class WaitCompleted(Event, tag="wait_completed", frozen=True):
    """The wait is over (its timer fired, or its event arrived); happens once."""

    correlation_id: str


# -- hooks -----------------------------------------------------------------------------------


class HookCreated(Event, tag="hook_created", frozen=True):
    """The workflow created a hook; ``token`` resolves to it while it lives."""

    correlation_id: str
    token: str
    metadata: Payload = NULL
    is_webhook: bool = False


class HookConflict(Event, tag="hook_conflict", frozen=True):
    """Written by the world instead of ``hook_created`` when ``token`` is already live."""

    correlation_id: str
    token: str
    conflicting_run_id: str | None = None


class HookReceived(Event, tag="hook_received", frozen=True):
    """A payload was sent to the hook (``resume_hook``, ``resume_webhook``)."""

    correlation_id: str
    payload: Payload
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class ChildEnded(Event, tag="child_ended", frozen=True):
    """The child run ``child_run_id`` ended: its ``outcome`` goes to the parent's hook
    ``correlation_id`` (token ``worldflow:child:{child_run_id}``).

    The engine appends it, after reading the child's terminal event; the hook's token is
    reserved, so no ``hook_received`` can forge an outcome, and every world checks the
    outcome against the child's recorded end (``worldflow.worlds._children``).
    """

    correlation_id: str
    child_run_id: str
    outcome: ChildOutcome


class HookDisposed(Event, tag="hook_disposed", frozen=True):
    """The hook was disposed; its token is free again."""

    correlation_id: str


# -- versioning ------------------------------------------------------------------------------


class PatchMarked(Event, tag="patch_marked", frozen=True):
    """The body took the new branch of ``patched(name)`` (or passed ``deprecate_patch(name)``)
    live: a replay of this log takes it too; a log without the marker takes the old one."""

    name: str


# -- named events and state ------------------------------------------------------------------


class EventRaised(Event, tag="event_raised", frozen=True):
    """A named event was raised for the run (Dapr ``raiseEvent``)."""

    name: str
    payload: Payload = NULL
    actor: str | None = None
    """Who asked for it (``cancel(..., actor=)``; the inspector records its session or token)."""


class StateUpdated(Event, tag="state_updated", frozen=True):
    """The workflow's state (``set_state``) is now ``state``."""

    state: Payload


AnyEvent: TypeAlias = (
    RunCreated
    | RunStarted
    | RunCompleted
    | RunFailed
    | RunCancelled
    | RunSuspended
    | RunResumed
    | RunStalled
    | RunUnstalled
    | StepCreated
    | StepStarted
    | StepCompleted
    | StepFailed
    | StepRetrying
    | StepInterrupted
    | StepSuspended
    | StepResumed
    | StepWoken
    | WaitCreated
    | WaitWoken
    | WaitCompleted
    | HookCreated
    | HookConflict
    | HookReceived
    | ChildEnded
    | HookDisposed
    | EventRaised
    | StateUpdated
    | PatchMarked
)
"""The union of every event type; decode with :func:`decode_event`."""

_EVENT_CLASSES: tuple[type[Event], ...] = AnyEvent.__args__
EVENT_TYPES: Final = frozenset(c.__struct_config__.tag for c in _EVENT_CLASSES)
CORRELATED_EVENT_TYPES: Final = frozenset(
    c.__struct_config__.tag for c in _EVENT_CLASSES if "correlation_id" in c.__annotations__
)
CREATION_EVENT_TYPES: Final = frozenset({"step_created", "wait_created", "hook_created"})
STEP_RESULT_EVENT_TYPES: Final = frozenset(
    {"step_started", "step_completed", "step_failed", "step_retrying", "step_suspended"}
)
RUN_TERMINAL_EVENT_TYPES: Final = frozenset({"run_completed", "run_failed", "run_cancelled"})

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)
_list_decoder = msgspec.json.Decoder(list[AnyEvent])


def encode_event(event: Event) -> bytes:
    """Encode one event as a JSON object (one line of a JSONL log)."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode one JSON event; a malformed one raises :class:`InvalidEventError` naming the field."""
    try:
        event: AnyEvent = _decoder.decode(data)
        return event
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEventError(f"malformed event JSON: {exc}") from None


def decode_events(data: bytes | str) -> list[AnyEvent]:
    """Decode a JSON array of events (the wire form of a batch)."""
    try:
        events: list[AnyEvent] = _list_decoder.decode(data)
        return events
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEventError(f"malformed event JSON: {exc}") from None


def check_event(event: object, run_id: str) -> None:
    """Reject what static typing cannot: a non-event, a wrong run id, an empty correlation id.

    Worlds call this on every appended event before touching their state.
    """
    if not isinstance(event, _EVENT_CLASSES):
        raise InvalidEventError(f"not an event: {type(event).__name__}")
    if event.run_id != run_id:
        raise InvalidEventError(
            f"event {event.type} is for run {event.run_id!r}, appended to run {run_id!r}"
        )
    if event.type in CORRELATED_EVENT_TYPES and (
        not isinstance(event.correlation_id, str) or not event.correlation_id
    ):
        raise InvalidEventError(
            f"event {event.type}: field `correlation_id` must be a non-empty str"
        )


def stamp(event: AnyEvent, *, seq: int, event_id: str, created_at: datetime) -> AnyEvent:
    """The event as stored: with the world's ``seq``, ``event_id`` and ``created_at``."""
    return msgspec.structs.replace(event, seq=seq, event_id=event_id, created_at=created_at)


def iter_types(events: Iterable[Event]) -> list[str]:
    """The tags of ``events`` in order (handy in tests and error messages)."""
    return [e.type for e in events]
