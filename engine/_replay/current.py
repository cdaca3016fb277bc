"""Where the authoring API finds the workflow instance it is running in.

A workflow body runs only while its :class:`~worldflow._replay.loop.WorkflowLoop` is the thread's
running loop, so "am I in a workflow body?" is "is the running loop a workflow loop?". Steps
run on the host loop (or in a worker thread with no loop), so the same check tells a step call
inside a body (a durable operation) from one anywhere else (a plain call).
"""

from __future__ import annotations

from asyncio import events
from typing import TYPE_CHECKING, cast

from worldflow._replay.loop import WorkflowLoop
from worldflow.errors import NotInWorkflowError

if TYPE_CHECKING:
    from worldflow._replay.instance import WorkflowInstance

__all__ = ["current_instance", "in_workflow", "require_instance"]


def current_instance() -> WorkflowInstance | None:
    """The workflow instance whose body is running now, or ``None`` outside a body."""
    loop = events._get_running_loop()
    if isinstance(loop, WorkflowLoop) and loop.owner is not None:
        return cast("WorkflowInstance", loop.owner)
    return None


def in_workflow() -> bool:
    """Whether the calling code runs inside a workflow body."""
    return current_instance() is not None


def require_instance(what: str) -> WorkflowInstance:
    """The running instance, or :class:`~worldflow.NotInWorkflowError` naming ``what``."""
    instance = current_instance()
    if instance is None:
        raise NotInWorkflowError(
            f"{what} can only be used inside a @workflow function while the engine runs it "
            "(not in a step, a test's plain call, or other code). In a step, pass the value "
            "in as an argument; in tests, run the workflow with an Engine or worldflow.testing."
        )
    return instance
