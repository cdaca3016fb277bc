"""Handing a run to whichever engine drives it: the queue message that names its workflow
and, when the run has one, its owner.

A write by a client (or by an engine that does not drive the run) is followed by one
message on the ``runs`` queue; the world gives it to the owner while that engine is live,
else to any engine serving the workflow (``Queue.lease``). An engine that shuts down cleanly
releases its runs and puts one message per run there, addressed to itself: the world hands
a message whose engine is gone to any engine serving the workflow, and an engine that gets a
message addressed to another takes an orphan over at once, so the runs move within a queue
round trip instead of at the others' next sweep (``ttl / 3``).
"""

from __future__ import annotations

from worldflow.errors import RunNotFoundError
from worldflow.worlds import QueueMessage, RunStatus, WorkflowRun, World

__all__ = ["RUN_QUEUE", "STEP_QUEUE", "enqueue_run", "hand_over"]

RUN_QUEUE = "runs"
STEP_QUEUE = "steps"


async def enqueue_run(world: World, run: WorkflowRun) -> None:
    """Ask the engine that drives ``run`` (or will) to drive it again."""
    message = QueueMessage(
        kind="run", run_id=run.run_id, workflow_name=run.workflow_name, engine_id=run.owner_id
    )
    await world.enqueue(RUN_QUEUE, message, idempotency_key=f"run:{run.run_id}")


async def hand_over(world: World, engine_id: str, run_ids: list[str]) -> None:
    """After ``engine_id`` released its runs, tell the engines serving those of ``run_ids``
    that are pending or running (what a sweep would claim) with one message each, addressed
    to the engine that is gone."""
    for run_id in run_ids:
        try:
            run = await world.get_run(run_id)
        except RunNotFoundError:
            continue
        if run.status in (RunStatus.PENDING, RunStatus.RUNNING) and run.owner_id is None:
            message = QueueMessage(
                kind="run", run_id=run_id, workflow_name=run.workflow_name, engine_id=engine_id
            )
            await world.enqueue(RUN_QUEUE, message, idempotency_key=f"run:{run_id}")
