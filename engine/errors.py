"""The worldflow error tree.

Every error worldflow raises derives from :class:`WorldflowError`. Each class has a stable
``code`` (used on the wire and in logs) and an ``http_status`` (used by the HTTP APIs and the
remote world); :func:`error_from_code` maps a code back to its class, so an error crosses HTTP
and comes out as the same type it went in as::

    WorldflowError
    ├── ConfigurationError              500  configuration_error
    │   ├── WorldNotAvailableError      500  world_not_available
    │   └── EngineNotRunningError       503  engine_not_running
    ├── SerializationError              400  serialization_error
    ├── WorldError                      500  world_error
    │   ├── InvalidEventError           400  invalid_event
    │   ├── NotFoundError               404  not_found
    │   │   ├── RunNotFoundError        404  run_not_found
    │   │   ├── StepNotFoundError       404  step_not_found
    │   │   ├── HookNotFoundError       404  hook_not_found
    │   │   └── StreamNotFoundError     404  stream_not_found
    │   ├── EntityConflictError         409  entity_conflict
    │   │   ├── HookConflictError       409  hook_conflict
    │   │   ├── RunTerminalError        409  run_terminal
    │   │   ├── RunNotTerminalError     409  run_not_terminal
    │   │   ├── LeaseLostError          409  lease_lost
    │   │   └── RunOwnedElsewhereError  409  run_owned_elsewhere
    │   ├── OwnershipLostError          409  ownership_lost
    │   ├── WorldLockedError            423  world_locked
    │   ├── DiskFullError               507  disk_full
    │   └── CorruptLogError             500  corrupt_log
    ├── WorkflowError                   500  workflow_error
    │   ├── NondeterminismError         500  nondeterminism
    │   ├── DeterminismViolationError   500  determinism_violation
    │   ├── WorkflowNotRegisteredError  404  workflow_not_registered
    │   ├── StepNotRegisteredError      500  step_not_registered
    │   ├── WorkflowFailedError         500  workflow_failed
    │   ├── WorkflowCancelledError      409  workflow_cancelled
    │   ├── WebhookNotAnsweredError     502  webhook_not_answered
    │   │   └── WebhookTimeoutError     504  webhook_timeout
    │   ├── StepFailedError             500  step_failed
    │   └── NotInWorkflowError          500  not_in_workflow
    └── StepError                       500  step_error
        ├── FatalError                  500  fatal
        └── RetryableError              500  retryable

``EntityConflictError`` is also the engine's "already done" signal: a second ``*_created``
event for the same correlation id means another worker (or an earlier attempt) got there first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

__all__ = [
    "ConfigurationError",
    "CorruptLogError",
    "DeterminismViolationError",
    "DiskFullError",
    "EngineNotRunningError",
    "EntityConflictError",
    "FatalError",
    "HookConflictError",
    "HookNotFoundError",
    "InvalidEventError",
    "LeaseLostError",
    "NondeterminismError",
    "NotFoundError",
    "NotInWorkflowError",
    "OwnershipLostError",
    "RetryableError",
    "RunNotFoundError",
    "RunNotTerminalError",
    "RunOwnedElsewhereError",
    "RunTerminalError",
    "ScheduleNotFoundError",
    "SeqConflictError",
    "SerializationError",
    "StepError",
    "StepFailedError",
    "StepNotFoundError",
    "StepNotRegisteredError",
    "StreamNotFoundError",
    "WebhookNotAnsweredError",
    "WebhookTimeoutError",
    "WorkflowCancelledError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowNotRegisteredError",
    "WorldError",
    "WorldLockedError",
    "WorldNotAvailableError",
    "WorldflowError",
    "error_details",
    "error_from_code",
]


ErrorDetail = str | int | float | bool | None
"""What an error's detail attribute may hold (what crosses the wire with its code)."""


class WorldflowError(Exception):
    """Base class of every error raised by worldflow."""

    code: ClassVar[str] = "worldflow_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str = "", **details: object) -> None:
        """``details``: the error's own attributes (``run_id=``, ``owner_id=``), set on it.

        The one constructor of the tree: a subclass with attributes declares them as typed
        keyword-only parameters and hands them here, so :func:`error_details` reads them
        back and a pickled copy keeps them.
        """
        super().__init__(message)
        self.message = message
        for name, value in details.items():
            setattr(self, name, value)

    def __reduce__(
        self,
    ) -> tuple[Callable[..., WorldflowError], tuple[type[WorldflowError], str, dict[str, Any]]]:
        own = {k: v for k, v in vars(self).items() if k != "message" and not k.startswith("_")}
        return (_rebuild, (type(self), self.message, own))


def _rebuild(cls: type[WorldflowError], message: str, details: dict[str, Any]) -> WorldflowError:
    """Unpickle an error: the message, then its details (every subclass takes ``message``)."""
    error = cls(message)
    for name, value in details.items():
        setattr(error, name, value)
    return error


class ConfigurationError(WorldflowError):
    """worldflow was set up wrongly (a bad URL, a missing option)."""

    code = "configuration_error"


class WorldNotAvailableError(ConfigurationError):
    """A world URL names a world that is not installed or not implemented yet."""

    code = "world_not_available"


class EngineNotRunningError(ConfigurationError):
    """An :class:`~worldflow.Engine` was used before ``async with`` entered it, or after it
    stopped."""

    code = "engine_not_running"
    http_status = 503


class SerializationError(WorldflowError):
    """A value cannot be encoded as a worldflow payload, or a payload cannot be decoded."""

    code = "serialization_error"
    http_status = 400


class WorldError(WorldflowError):
    """An error reported by a world (storage, queue or streams)."""

    code = "world_error"


class InvalidEventError(WorldError):
    """An event or request is malformed: a missing field, a wrong type, a bad value."""

    code = "invalid_event"
    http_status = 400


class NotFoundError(WorldError):
    """The thing asked for does not exist."""

    code = "not_found"
    http_status = 404


class RunNotFoundError(NotFoundError):
    """No run has this id."""

    code = "run_not_found"


class StepNotFoundError(NotFoundError):
    """No step of this run has this id (or name)."""

    code = "step_not_found"


class HookNotFoundError(NotFoundError):
    """No live hook has this token (or id)."""

    code = "hook_not_found"


class StreamNotFoundError(NotFoundError):
    """The run has no stream of this name."""

    code = "stream_not_found"


class ScheduleNotFoundError(NotFoundError):
    """No schedule has this name."""

    code = "schedule_not_found"


class EntityConflictError(WorldError):
    """The write conflicts with what is stored: it was already done, or is not allowed now."""

    code = "entity_conflict"
    http_status = 409


class HookConflictError(EntityConflictError):
    """A live hook already holds this token."""

    code = "hook_conflict"


class RunTerminalError(EntityConflictError):
    """The run has finished; it accepts nothing but an in-flight step's own result."""

    code = "run_terminal"


class RunNotTerminalError(EntityConflictError):
    """The operation needs a finished run (purge), and this one is still going."""

    code = "run_not_terminal"


class LeaseLostError(EntityConflictError):
    """A queue lease expired or was taken over before it was acknowledged."""

    code = "lease_lost"


class RunOwnedElsewhereError(EntityConflictError):
    """An owner-only event (a body decision, a step start, a timer firing, a run's end) came
    from an engine that does not own the run, or with a stale fence.

    Another engine drives the run now: the caller must stop driving it (drop what it cached)
    and must not retry. ``owner_id`` / ``owner_epoch`` say who owns it, when the world knows.
    """

    code = "run_owned_elsewhere"

    owner_id: str | None
    owner_epoch: int | None

    def __init__(
        self, message: str = "", *, owner_id: str | None = None, owner_epoch: int | None = None
    ) -> None:
        super().__init__(message, owner_id=owner_id, owner_epoch=owner_epoch)


class SeqConflictError(EntityConflictError):
    """An append's precondition failed: the run's log is not at the ``expected_seq`` the
    caller built the batch on (someone else appended meanwhile). Nothing was stored.

    ``last_seq`` is where the log is (when the world knows): read the events after the
    caller's position and decide again.
    """

    code = "seq_conflict"

    last_seq: int | None

    def __init__(self, message: str = "", *, last_seq: int | None = None) -> None:
        super().__init__(message, last_seq=last_seq)


class OwnershipLostError(WorldError):
    """The engine's registration expired (no heartbeat within its TTL) or is unknown.

    The world may already have given its runs to other engines: the engine must drop every
    run it drives and register again under a new id before it drives anything.
    """

    code = "ownership_lost"
    http_status = 409


class WorldLockedError(WorldError):
    """Another process holds the world's writer lock."""

    code = "world_locked"
    http_status = 423


class DiskFullError(WorldError):
    """A write found no space left on the device (``ENOSPC``, or a quota: ``EDQUOT``).

    Nothing of the failed write was kept, so the world stays consistent: it goes on serving
    reads, and writes are taken again once they fit. Over HTTP: 507 Insufficient Storage.
    """

    code = "disk_full"
    http_status = 507


class CorruptLogError(WorldError):
    """A stored log cannot be read; the message names the file and line."""

    code = "corrupt_log"


class WorkflowError(WorldflowError):
    """An error about a workflow run as a whole."""

    code = "workflow_error"


class NondeterminismError(WorkflowError):
    """Replaying the event log did not match what the workflow code does now.

    The engine does not fail the run for it: the run is *stalled* (``RunStatus.STALLED``)
    with this divergence recorded, until code that replays it is deployed (or the run is
    failed for good with ``Engine.fail``).

    Attributes:
        run_id: The run whose log did not replay.
        position: The ``seq`` of the recorded event where the code parted from the log.
        recorded: What the log says the code did there.
        current: What the code does there now.
    """

    code = "nondeterminism"

    run_id: str
    position: int
    recorded: str
    current: str

    def __init__(
        self,
        message: str = "",
        *,
        run_id: str = "",
        position: int = 0,
        recorded: str = "",
        current: str = "",
    ) -> None:
        super().__init__(
            message, run_id=run_id, position=position, recorded=recorded, current=current
        )


class DeterminismViolationError(WorkflowError):
    """Workflow code did something that cannot be replayed (real I/O, a timer, a thread)."""

    code = "determinism_violation"


class WorkflowNotRegisteredError(WorkflowError):
    """No workflow of this name is registered with the engine."""

    code = "workflow_not_registered"
    http_status = 404


class StepNotRegisteredError(WorkflowError):
    """No step of this name is registered."""

    code = "step_not_registered"


class WorkflowFailedError(WorkflowError):
    """The run failed; raised by ``Run.result()``. ``error_name`` is the original class."""

    code = "workflow_failed"

    run_id: str
    error_name: str

    def __init__(self, message: str = "", *, run_id: str = "", error_name: str = "") -> None:
        super().__init__(message, run_id=run_id, error_name=error_name)


class WorkflowCancelledError(WorkflowError):
    """The run was cancelled; raised by ``Run.result()``."""

    code = "workflow_cancelled"
    http_status = 409


class WebhookNotAnsweredError(WorkflowError):
    """A ``respond_with="manual"`` webhook's run ended without answering the caller."""

    code = "webhook_not_answered"
    http_status = 502


class WebhookTimeoutError(WebhookNotAnsweredError):
    """A ``respond_with="manual"`` webhook's run did not answer within the timeout."""

    code = "webhook_timeout"
    http_status = 504


class StepFailedError(WorkflowError):
    """Raised in a workflow body where it awaits a step that failed for good.

    The step raised ``FatalError`` or used up its retries. Catch it in the workflow to
    compensate or go another way; left alone, it fails the run.

    Attributes:
        step_name: The step's registered name.
        step_id: The step call's correlation id.
        error_name: The class name of the step's last error (``"FatalError"``, ``"KeyError"``).
        error_code: The worldflow code of that error, if it had one (``"fatal"``).
        error_message: The message of that error.
    """

    code = "step_failed"

    step_name: str
    step_id: str
    error_name: str
    error_code: str | None
    error_message: str

    def __init__(
        self,
        message: str = "",
        *,
        step_name: str = "",
        step_id: str = "",
        error_name: str = "",
        error_code: str | None = None,
        error_message: str = "",
    ) -> None:
        super().__init__(
            message,
            step_name=step_name,
            step_id=step_id,
            error_name=error_name,
            error_code=error_code,
            error_message=error_message,
        )


class NotInWorkflowError(WorkflowError):
    """A workflow-only function (``sleep``, ``create_hook``, ...) was called outside a body."""

    code = "not_in_workflow"


class StepError(WorldflowError):
    """Base of the errors a step raises to steer its own retries."""

    code = "step_error"


class FatalError(StepError):
    """Raise from a step to fail it at once, without retrying."""

    code = "fatal"


class RetryableError(StepError):
    """Raise from a step to retry it, optionally not before ``retry_after``.

    ``retry_after`` is seconds, a ``timedelta``, a duration string (``"30s"``) or a datetime.
    """

    code = "retryable"

    retry_after: float | str | timedelta | datetime | None

    def __init__(
        self, message: str = "", *, retry_after: float | str | timedelta | datetime | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)


def _all_subclasses(cls: type[WorldflowError]) -> list[type[WorldflowError]]:
    out: list[type[WorldflowError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_details(error: WorldflowError) -> dict[str, ErrorDetail]:
    """The error's own attributes besides its message (``owner_id`` of a
    :class:`RunOwnedElsewhereError`, ``run_id`` of a :class:`WorkflowFailedError`), the
    JSON-safe ones: what crosses the wire with its code, for :func:`error_from_code`."""
    return {
        name: value
        for name, value in vars(error).items()
        if name != "message"
        and not name.startswith("_")
        and (value is None or isinstance(value, (str, int, float, bool)))
    }


def error_from_code(
    code: str, message: str, details: Mapping[str, object] | None = None
) -> WorldflowError:
    """Build the error whose stable ``code`` is ``code`` (``WorldflowError`` if unknown).

    The one place HTTP bodies and stored error records turn back into exception types.
    ``details`` (from :func:`error_details`) sets the attributes the class has.
    """
    cls = _BY_CODE.get(code, WorldflowError)
    error = cls(message)
    for name, value in (details or {}).items():
        if name != "message" and not name.startswith("_") and hasattr(error, name):
            setattr(error, name, value)
    return error


_BY_CODE: dict[str, type[WorldflowError]] = {}


def _index_codes() -> None:
    classes: list[type[WorldflowError]] = [WorldflowError, *_all_subclasses(WorldflowError)]
    for cls in classes:
        _BY_CODE.setdefault(cls.code, cls)


_index_codes()
