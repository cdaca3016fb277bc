"""Handing a run to whichever engine drives it: the queue message that names its workflow
and, when the run has one, its owner.

A write by a client (or by an engine that does not drive the run) is followed by one
message on the ``runs`` queue; the world gives it to the owner while that engine is live,
else to any engine serving the workflow (``Queue.lease``).
"""

from __future__ import annotations

from worldflow.worlds import QueueMessage, WorkflowRun, World

__all__ = ["RUN_QUEUE", "STEP_QUEUE", "enqueue_run"]

RUN_QUEUE = "runs"
STEP_QUEUE = "steps"


async def enqueue_run(world: World, run: WorkflowRun) -> None:
    """Ask the engine that drives ``run`` (or will) to drive it again."""
    message = QueueMessage(
        kind="run", run_id=run.run_id, workflow_name=run.workflow_name, engine_id=run.owner_id
    )
    await world.enqueue(RUN_QUEUE, message, idempotency_key=f"run:{run.run_id}")
