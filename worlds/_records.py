"""The views a world keeps in step with its event logs, and the other records it returns.

All records are frozen msgspec Structs. Payloads (inputs, outputs, hook payloads, state) are
:data:`Payload` values: JSON text the engine produced with ``worldflow._serde``; a world stores
and returns them byte for byte and never looks inside.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Generic, TypeVar

import msgspec

__all__ = [
    "NULL",
    "TERMINAL_RUN_STATUSES",
    "TERMINAL_STEP_STATUSES",
    "ErrorInfo",
    "Hook",
    "HookStatus",
    "Lease",
    "Page",
    "Payload",
    "QueueMessage",
    "RunStatus",
    "Step",
    "StepStatus",
    "StreamChunk",
    "StreamInfo",
    "Wait",
    "WaitStatus",
    "WorkflowRun",
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


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded error: the exception's class name, its message, and where it came from."""

    name: str
    message: str
    code: str | None = None
    stack: str | None = None


class WorkflowRun(msgspec.Struct, frozen=True, kw_only=True):
    """The view of one run, kept in step with its event log.

    ``last_seq`` is the ``seq`` of the newest event in the log (0 for none); readers use it to
    fetch only what is new.
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


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """The view of one step call of a run; ``step_id`` is its correlation id.

    ``attempt`` counts ``step_started`` events (0 before the first start). ``suspend_payload``
    is what the step passed to ``suspend()``; ``resume_data`` what ``resume_step`` sent back.
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


class Hook(msgspec.Struct, frozen=True, kw_only=True):
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


class Wait(msgspec.Struct, frozen=True, kw_only=True):
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
    """A unit of work on a queue: drive run ``run_id``, or run its step ``step_id``."""

    kind: str  # "run" or "step"
    run_id: str
    step_id: str | None = None


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
