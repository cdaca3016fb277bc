"""Child workflows: the contract between a parent body and the runtime.

``await other_workflow(x)`` inside a body does two durable things, in this order:

1. creates a hook with token ``worldflow:child:{child_run_id}`` (so the child's outcome has
   somewhere to go even if the child finishes at once);
2. calls the builtin step :data:`START_CHILD_STEP` with the input
   ``{"workflow_name": ..., "run_id": child_run_id, "input": {parameter: value}}``; the
   runtime's step starts the child run with ``parent_run_id`` set and that run id (a retry
   finds it already started).

The child's run id is ``{parent_run_id}-{step correlation id}``, so it is known before the step
runs and the same on every replay. When the child reaches a terminal state the runtime resumes
the hook with :func:`child_outcome` of the child's run; the parent returns the output, or
raises :class:`~worldflow.WorkflowFailedError` / :class:`~worldflow.WorkflowCancelledError`.
"""

from __future__ import annotations

from typing import Any

from worldflow import _serde
from worldflow.errors import (
    SerializationError,
    WorkflowCancelledError,
    WorkflowError,
    WorkflowFailedError,
)
from worldflow.worlds._records import RunStatus, WorkflowRun

__all__ = [
    "CHILD_TOKEN_PREFIX",
    "START_CHILD_STEP",
    "child_hook_token",
    "child_outcome",
    "child_result",
    "child_run_id",
]

START_CHILD_STEP = "worldflow.start_child"
"""The builtin step that starts a child run; its input is documented in this module."""

CHILD_TOKEN_PREFIX = "worldflow:child:"


def child_run_id(parent_run_id: str, step_id: str) -> str:
    """The run id of the child started by the step ``step_id`` of ``parent_run_id``."""
    return f"{parent_run_id}-{step_id}"


def child_hook_token(child_run_id: str) -> str:
    """The token of the parent's hook that receives the outcome of ``child_run_id``."""
    return f"{CHILD_TOKEN_PREFIX}{child_run_id}"


def child_outcome(run: WorkflowRun) -> dict[str, Any]:
    """The payload to resume the parent's hook with, for a terminal child ``run``.

    ``{"status": "completed", "output": value}``,
    ``{"status": "failed", "error": {"name", "message", "code"}}`` or
    ``{"status": "cancelled", "reason": str | None}``.
    """
    if run.status is RunStatus.COMPLETED:
        try:
            output = _serde.decode(run.output)
        except SerializationError as exc:
            return {
                "status": "failed",
                "error": {"name": "SerializationError", "message": str(exc), "code": exc.code},
            }
        return {"status": "completed", "output": output}
    if run.status is RunStatus.FAILED:
        error = run.error
        return {
            "status": "failed",
            "error": {
                "name": error.name if error else "WorkflowError",
                "message": error.message if error else "the child run failed",
                "code": error.code if error else None,
            },
        }
    if run.status is RunStatus.CANCELLED:
        return {"status": "cancelled", "reason": run.cancel_reason}
    raise ValueError(f"run {run.run_id} is {run.status}, not terminal: no outcome yet")


def child_result(workflow_name: str, run_id: str, outcome: Any) -> Any:
    """What ``await child(...)`` returns (or raises) for an outcome from :func:`child_outcome`."""
    status = outcome.get("status") if isinstance(outcome, dict) else None
    if status == "completed":
        return outcome.get("output")
    if status == "failed":
        error = outcome.get("error") or {}
        name = str(error.get("name") or "WorkflowError")
        message = str(error.get("message") or "")
        raise WorkflowFailedError(
            f"child workflow {workflow_name!r} (run {run_id}) failed: {name}: {message}",
            run_id=run_id,
            error_name=name,
        )
    if status == "cancelled":
        reason = outcome.get("reason")
        suffix = f": {reason}" if reason else ""
        raise WorkflowCancelledError(
            f"child workflow {workflow_name!r} (run {run_id}) was cancelled{suffix}"
        )
    raise WorkflowError(
        f"child workflow {workflow_name!r} (run {run_id}) sent an outcome this engine cannot "
        f"read: {outcome!r}"
    )
