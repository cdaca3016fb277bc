"""What a workflow instance reports: its :class:`Progress` after a feed, the run's metadata.

Kept apart from :mod:`worldflow._replay.instance` so the runtime's modules can name what the
instance hands them without the instance's machinery. Pure data: no I/O, no clock.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime

import msgspec

from worldflow.errors import StepFailedError, WorkflowFailedError, WorldflowError
from worldflow.worlds import AnyEvent, ErrorInfo, RunCreated

__all__ = ["Progress", "WorkflowMetadata", "error_info"]


class Progress(msgspec.Struct, kw_only=True):
    """What the runtime must do after a :meth:`WorkflowInstance.feed`.

    Attributes:
        commands: New events to append, in order (``seq``, ``event_id`` and ``created_at``
            unset). Everything the body owes the log that the log does not have yet: the
            runtime appends them and feeds the stored events back.
        finished: The body has ended (returned, raised, diverged, or the run ended); if the
            log does not have it yet, ``commands`` end with ``run_completed`` / ``run_failed``.
        pending_steps: Correlation ids of steps whose ``step_created`` was fed and that have
            no final result yet; the runtime runs those not in flight.
        waits: ``(wait id, resume_at)`` of created timers (and event waits with a timeout)
            still waiting: the runtime appends ``wait_completed`` when one is due.
        suspended: A ``run_suspended`` was fed and no ``run_resumed`` yet.
        blocked_on: What the body waits for, readably: ``"step charge"``,
            ``"hook approve:o-1"``, ``"event shipped"``, ``"sleep until ..."``.
        error: The message of the error that ended the run (body exception, nondeterminism,
            determinism violation), or ``None``.
        stalled: The log did not replay against this code (``instance.error`` is the
            :class:`~worldflow.NondeterminismError`): the instance owes nothing and will do
            nothing more; the runtime records ``run_stalled`` and stops driving the run.
    """

    commands: list[AnyEvent]
    finished: bool
    pending_steps: list[str]
    waits: list[tuple[str, datetime]]
    suspended: bool
    blocked_on: list[str]
    error: str | None = None
    stalled: bool = False


class WorkflowMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """The run a workflow body belongs to (``get_workflow_metadata()``).

    Attributes:
        workflow_name: The workflow's registered name.
        run_id: The run's id.
        created_at: When the run was created.
        started_at: When a worker first started it (the ``run_started`` event).
        resource_id: The resource the run was started for, if any.
        metadata: The metadata it was started with.
        parent_run_id: The parent run, for a child workflow.
        priority: The run's ``start(..., priority=)`` (higher first for permits).
    """

    workflow_name: str
    run_id: str
    created_at: datetime
    started_at: datetime | None = None
    resource_id: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    parent_run_id: str | None = None
    priority: int = 0

    @classmethod
    def of(
        cls, workflow_name: str, created: RunCreated, started_at: datetime | None
    ) -> WorkflowMetadata:
        """The metadata of a run from its ``run_created`` and first ``run_started`` time."""
        when = created.created_at
        return cls(
            workflow_name=workflow_name,
            run_id=created.run_id,
            created_at=when if when.tzinfo is not None else when.replace(tzinfo=UTC),
            started_at=started_at,
            resource_id=created.resource_id,
            metadata=dict(created.metadata),
            parent_run_id=created.parent_run_id,
            priority=created.priority,
        )


def error_info(exc: BaseException) -> ErrorInfo:
    """The recorded form of the error that ended a run (its class name, message, stack)."""
    code = exc.code if isinstance(exc, WorldflowError) else None
    message = exc.message if isinstance(exc, WorldflowError) else str(exc)
    stack = "".join(traceback.format_exception(exc))
    name = type(exc).__name__
    if isinstance(exc, (StepFailedError, WorkflowFailedError)) and exc.error_name:
        # A step's (or child's) failure the body let through: the run failed with the
        # original error (``WorkflowFailedError.error_name``); ``code`` says how it came.
        name = exc.error_name
    return ErrorInfo(name=name, message=message, code=code, stack=stack)
