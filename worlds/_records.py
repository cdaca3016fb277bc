"""The views a world keeps in step with its event logs, and the other records it returns.

All records are frozen msgspec Structs. Payloads (inputs, outputs, hook payloads, state) are
:data:`Payload` values: JSON text the engine produced with ``worldflow._serde``; a world stores
and returns them byte for byte and never looks inside.

The records a world keeps for every run (:class:`WorkflowRun`, :class:`Step`, :class:`Hook`,
:class:`Wait`, :class:`ErrorInfo`) and the events (``worldflow.worlds._events``) are declared
``gc=False``: the cyclic collector does not track them. They hold only data (strings, numbers,
times, payloads, dicts and lists of strings, other such records), so they can never be part of
a reference cycle, and a world that holds thousands of runs no longer makes every full
collection walk them (``tests/worlds/test_records_untracked.py``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

import msgspec

__all__ = [
    "NULL",
    "RESERVED_TOKEN_PREFIX",
    "TERMINAL_RUN_STATUSES",
    "TERMINAL_STEP_STATUSES",
    "ChildCancelled",
    "ChildCompleted",
    "ChildFailed",
    "ChildOutcome",
    "EngineInfo",
    "ErrorInfo",
    "Fence",
    "ForkPoint",
    "Hook",
    "HookStatus",
    "Lease",
    "Page",
    "ParameterInfo",
    "Payload",
    "Permit",
    "PermitGrant",
    "QueueMessage",
    "RunStatus",
    "Step",
    "StepStatus",
    "StreamChunk",
    "StreamInfo",
    "Wait",
    "WaitStatus",
    "WorkflowInfo",
    "WorkflowRun",
    "child_outcome",
]

Payload = msgspec.Raw
"""An encoded value: JSON text made by the engine's serializer, embedded as-is."""

NULL: Payload = msgspec.Raw(b"null")
"""The payload of "no value" (a run that has no output yet, a hook without metadata)."""

T = TypeVar("T")


class RunStatus(enum.StrEnum):
    """Where a run is in its life. ``completed``, ``failed`` and ``cancelled`` are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    STALLED = "stalled"
    """Its log did not replay against the deployed code; no engine drives it meanwhile."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the run has finished for good."""
        return self in TERMINAL_RUN_STATUSES


TERMINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(enum.StrEnum):
    """Where a step is. ``completed`` and ``failed`` are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the step's result is recorded for good."""
        return self in TERMINAL_STEP_STATUSES


TERMINAL_STEP_STATUSES = frozenset({StepStatus.COMPLETED, StepStatus.FAILED})


class HookStatus(enum.StrEnum):
    """A hook is ``active`` (its token resolves) until disposed or its run ends."""

    ACTIVE = "active"
    DISPOSED = "disposed"


class WaitStatus(enum.StrEnum):
    """A wait (durable timer, or a named-event wait with its timeout) is waiting or done."""

    WAITING = "waiting"
    COMPLETED = "completed"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A recorded error: the exception's class name, its message, and where it came from."""

    name: str
    message: str
    code: str | None = None
    stack: str | None = None


RESERVED_TOKEN_PREFIX: Final = "worldflow:"
"""Hook tokens that start with this are the engine's own (a child's outcome goes to one);
user code cannot create them and ``resume_hook`` cannot send to them."""


class ChildCompleted(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="status", tag="completed"
):
    """A child run returned ``output`` (an encoded payload)."""

    output: Payload = NULL


class ChildFailed(msgspec.Struct, frozen=True, kw_only=True, tag_field="status", tag="failed"):
    """A child run failed with ``error`` (its stack is not copied to the parent)."""

    error: ErrorInfo


class ChildCancelled(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="status", tag="cancelled"
):
    """A child run was cancelled, for ``reason``."""

    reason: str | None = None


ChildOutcome: TypeAlias = ChildCompleted | ChildFailed | ChildCancelled
"""How a child run ended, as its parent receives it (``child_ended``). The JSON is the shape
older logs carry in a ``hook_received`` payload: ``{"status": "completed", "output": ...}``."""


class ForkPoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where a fork left its source run, and what its replay needs (``run_created.fork``).

    A fork's log begins with copies of the source's events up to the step it forks from
    (``run_created``, then ``run_started`` and the copies): the fork replays from its own log
    alone. These fields make that replay take the source's path up to the step.

    Attributes:
        step_id: The source's step the fork runs again (its correlation id in the source).
        step_name: That step's name.
        step_number: Its place in the body's call order: the fork's operation with this
            number is that step call.
        step_input: The input that call runs with in the fork (a JSON object of its
            arguments; ``null``: the one the code computes).
        ids_at: The time part of the fork's correlation ids (the copies were written with
            ids of this time before the world stamped the fork's ``created_at``).
        clock: The source's times of the fork's events from seq 2 on (its ``run_started`` and
            the copies): ``now()`` in the body reads them, so the copied part sees the
            clock the source saw.
    """

    step_id: str
    step_name: str
    step_number: int
    step_input: Payload = NULL
    ids_at: datetime
    clock: list[datetime] = msgspec.field(default_factory=list)


class WorkflowRun(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The view of one run, kept in step with its event log.

    ``last_seq`` is the ``seq`` of the newest event in the log (0 for none); readers use it to
    fetch only what is new.

    ``owner_id`` is the engine that drives the run (``None``: nobody yet, or released), and
    ``owner_epoch`` counts the changes of owner (0: never owned); see ``Ownership``.
    """

    run_id: str
    workflow_name: str
    status: RunStatus
    input: Payload
    created_at: datetime
    updated_at: datetime
    last_seq: int = 0
    output: Payload = NULL
    error: ErrorInfo | None = None
    resource_id: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    state: Payload = NULL
    parent_run_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cancel_reason: str | None = None
    forked_from: str | None = None
    """The run this one was forked (or rerun) from; its forks list with
    ``list_runs(forked_from=...)``."""
    forked_from_step: str | None = None
    """The source's step id the fork ran again (``None``: forked from the start)."""
    patches: list[str] = msgspec.field(default_factory=list)
    """The names of the ``patch_marked`` events in the log, in order: a replay of the log up
    to ``last_seq`` takes the new branch of exactly these ``patched()`` calls."""
    owner_id: str | None = None
    owner_epoch: int = 0
    start_at: datetime | None = None
    """Not before this time (``start(..., delay=)``): a delayed run is ``pending`` until
    then, and an engine starts it once it is due."""
    priority: int = 0
    """Who goes first when runs wait for a flow-control permit (higher first)."""
    corrupt: str | None = None
    """Set when the run's stored log is damaged (a file world's unreadable or truncated log):
    what is wrong and where (file and line). Such a run is listed, with this mark, but every
    read of it and every append to it raises :class:`~worldflow.CorruptLogError`; the view
    holds what the log said before the damage."""


def child_outcome(run: WorkflowRun) -> ChildOutcome:
    """The outcome a parent receives for its terminal child ``run`` (what ``child_ended``
    carries): the output, the error without its stack, or the cancel reason.

    Every world checks a ``child_ended`` against it (the child's recorded end), so it is the
    one definition the engine sends and the rules accept.

    Raises:
        ValueError: the run is not terminal.
    """
    status = run.status
    if status is RunStatus.COMPLETED:
        return ChildCompleted(output=run.output)
    if status is RunStatus.FAILED:
        error = run.error
        return ChildFailed(
            error=ErrorInfo(
                name=error.name if error else "WorkflowError",
                message=error.message if error else "the child run failed",
                code=error.code if error else None,
            )
        )
    if status is RunStatus.CANCELLED:
        return ChildCancelled(reason=run.cancel_reason)
    raise ValueError(f"run {run.run_id} is {status}, not terminal: no outcome yet")


class Step(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The view of one step call of a run; ``step_id`` is its correlation id.

    ``attempt`` counts ``step_started`` events (0 before the first start). Of those,
    ``interrupted_attempts`` were cut short by an engine that stopped (``step_interrupted``)
    and ``lost_attempts`` were lost to a crash (started again with no outcome recorded):
    neither counts against ``max_retries``; lost ones have their own limit
    (``max_lost_attempts``). ``suspend_payload`` is what the step passed to ``suspend()``;
    ``resume_data`` what ``resume_step`` sent back.
    """

    run_id: str
    step_id: str
    step_name: str
    status: StepStatus
    input: Payload
    created_at: datetime
    updated_at: datetime
    attempt: int = 0
    output: Payload = NULL
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_after: datetime | None = None
    suspend_payload: Payload = NULL
    resume_data: Payload = NULL
    interrupted_attempts: int = 0
    lost_attempts: int = 0


class Hook(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The view of one hook; its ``token`` resolves to it while it is ``active``."""

    run_id: str
    hook_id: str
    token: str
    status: HookStatus
    created_at: datetime
    metadata: Payload = NULL
    is_webhook: bool = False
    received_count: int = 0
    disposed_at: datetime | None = None


class Wait(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The view of one wait: a durable sleep (``resume_at``) or a named-event wait."""

    run_id: str
    wait_id: str
    status: WaitStatus
    created_at: datetime
    resume_at: datetime | None = None
    event_name: str | None = None
    completed_at: datetime | None = None


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a listing. Pass ``cursor`` back to get the next; ``None`` at the end."""

    items: list[T]
    cursor: str | None = None
    has_more: bool = False


class QueueMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A unit of work on a queue: drive run ``run_id``, or run its step ``step_id``.

    ``workflow_name`` is the run's workflow: a world hands the message only to a consumer
    that serves it (``lease(workflows=...)``). ``engine_id`` addresses the engine that owns
    the run: only that engine gets the message while it is live, any engine serving the
    workflow once it is not. ``None`` for either means "anyone".

    ``kind`` says what to do: ``"run"`` (drive the run; no ``step_id``) or ``"step"`` (run the
    step ``step_id``). Any other combination is refused when the message is built or decoded.
    """

    kind: Literal["run", "step"]
    run_id: str
    step_id: str | None = None
    workflow_name: str | None = None
    engine_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("run", "step"):
            raise ValueError(f"a queue message's kind is 'run' or 'step', not {self.kind!r}")
        if self.kind == "step" and self.step_id is None:
            raise ValueError("a queue message of kind 'step' names its step_id")
        if self.kind == "run" and self.step_id is not None:
            raise ValueError(
                f"a queue message of kind 'run' has no step_id (got {self.step_id!r}); "
                "use kind='step' to run a step"
            )


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A message handed to one consumer until ``expires_at``; ack or nack it before then.

    ``attempt`` counts deliveries of this message, starting at 1.
    """

    lease_id: str
    message_id: str
    queue: str
    message: QueueMessage
    attempt: int
    expires_at: datetime


class StreamChunk(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk of a run's output stream, at a dense ``index`` starting at 0."""

    index: int
    data: bytes


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A run's stream: its name, how many chunks it holds, whether it was closed."""

    run_id: str
    name: str
    length: int
    closed: bool


class Fence(msgspec.Struct, frozen=True, kw_only=True):
    """Who appends: an engine and the run's ``owner_epoch`` it last saw (see ``Ownership``).

    Passed as ``append(..., fence=)``; owner-only events are accepted only when the fence
    matches the run's owner and epoch, or the run is unowned and the fence claims it.
    """

    engine_id: str
    epoch: int


class EngineInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A registered engine: its fresh id, what it serves, and until when it counts as live.

    An engine is live while ``expires_at`` (its last heartbeat plus ``ttl`` seconds, on the
    world's clock) is in the future.
    """

    engine_id: str
    workflows: tuple[str, ...]
    ttl: float
    registered_at: datetime
    heartbeat_at: datetime
    expires_at: datetime


class Permit(msgspec.Struct, frozen=True, kw_only=True):
    """A flow-control permit on ``key``, held or waited for (``FlowControl``).

    ``granted`` permits count against the key's limit: a concurrency permit
    (``expires_at`` is ``None``) until it is released, its ``engine_id`` stops being live or
    its run ends; a rate permit until ``expires_at`` (granted + the period). A waiter
    (``granted`` false) keeps its place in line (``priority``, then ``since``) while it asks
    again within :data:`~worldflow.worlds.PERMIT_WAIT_TTL` seconds.
    """

    key: str
    holder: str
    run_id: str
    engine_id: str
    granted: bool
    priority: int = 0
    since: datetime
    """When it was granted, or (a waiter) when it first asked."""
    asked_at: datetime
    """When its holder last asked."""
    expires_at: datetime | None = None


class PermitGrant(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``acquire_permit``.

    ``held`` is how many granted permits count on the key after the call, ``ahead`` how
    many waiters are before this holder in line (0 when granted). ``retry_after`` is, for a
    refused rate permit, the seconds until the next one on the key expires (``None``: no
    hint; ask again later).
    """

    granted: bool
    held: int
    ahead: int = 0
    retry_after: float | None = None


class ParameterInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One parameter of a workflow or step, for listings (``list_workflows``, the inspector).

    Attributes:
        name: The parameter's name.
        kind: ``positional_only``, ``positional_or_keyword``, ``var_positional``,
            ``keyword_only`` or ``var_keyword``.
        annotation: The annotation as text, or ``None``.
        required: Whether a caller must pass it.
        default: ``repr()`` of the default value, or ``None``.
        json_schema: The JSON Schema of the annotated type as JSON text, or :data:`NULL`
            where the type has none (no annotation, or a type msgspec cannot describe).
    """

    name: str
    kind: str
    annotation: str | None = None
    required: bool = True
    default: str | None = None
    json_schema: Payload = NULL

    def schema(self) -> dict[str, Any] | None:
        """:attr:`json_schema` decoded, or ``None``."""
        decoded = msgspec.json.decode(self.json_schema)
        return decoded if isinstance(decoded, dict) else None


class WorkflowInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow's catalog entry: what engines publish and clients list (``Catalog``).

    Attributes:
        name: The registered name (what ``start`` and the HTTP APIs take).
        parameters: The body's parameters.
        step_names: The steps the body calls directly (found in its code; best effort).
        doc: The body's docstring, or ``None``.
        input_schema: A JSON Schema (JSON text) of the input as an object of the named
            parameters, or :data:`NULL` when a parameter's type has none.
        engines: The live engines that serve it, filled in by the world when it is read
            (ignored when published); empty: no engine runs it now, so its runs wait.
    """

    name: str
    parameters: tuple[ParameterInfo, ...] = ()
    step_names: list[str] = msgspec.field(default_factory=list)
    doc: str | None = None
    input_schema: Payload = NULL
    engines: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any] | None:
        """:attr:`input_schema` decoded, or ``None``."""
        decoded = msgspec.json.decode(self.input_schema)
        return decoded if isinstance(decoded, dict) else None
