"""The runtime side of child workflows: the builtin step that starts a child run.

The workflow side (``worldflow._replay.child_contract``) records a call of the step
:data:`~worldflow._replay.child_contract.START_CHILD_STEP` with
``{"workflow_name", "run_id", "input"}`` after creating the hook
``worldflow:child:{run_id}``. This step creates the child run with ``parent_run_id`` set; a
retry, or a second engine, finds it already created (``EntityConflictError``) and is done.
When the child ends, the driver resumes the parent's hook with the child's outcome
(``RunEndings.notify_parent``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from worldflow import _serde
from worldflow._registry import Backoff, StepOptions, make_step
from worldflow._replay.child_contract import START_CHILD_STEP
from worldflow._runtime.step_info import current_step
from worldflow.errors import EntityConflictError, FatalError, WorkflowNotRegisteredError
from worldflow.worlds import RunCreated, RunStarted

if TYPE_CHECKING:
    from worldflow._replay.instance import WorkflowMetadata
    from worldflow._runtime.engine import Engine

__all__ = ["ChildStarter", "start_child_services"]


class ChildStarter:
    """What the builtin step needs from the engine (put on each step's context)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The engine the step runs in (builtin steps start runs through it)."""
        return self._engine

    async def start_child(
        self, parent: WorkflowMetadata, workflow_name: str, run_id: str, input: Any
    ) -> str:
        """Create (once) and drive the child run ``run_id``; return its id."""
        engine = self._engine
        try:
            definition = engine.registry.workflow(workflow_name)
        except WorkflowNotRegisteredError as exc:
            raise FatalError(str(exc)) from None
        created = RunCreated(
            seed=secrets.token_hex(16),
            run_id=run_id,
            workflow_name=definition.name,
            input=_serde.encode(input),
            resource_id=parent.resource_id,
            parent_run_id=parent.run_id,
            trace_context=await engine._trace_context(parent.run_id),  # one trace, parent's
        )
        try:
            result = await engine._writes.append(
                run_id, [created, RunStarted(run_id=run_id)], fence=engine.owner.fence(run_id)
            )
        except EntityConflictError:
            return run_id  # started by an earlier attempt
        driver = engine.driver
        engine.owner.saw(result.run)
        driver.adopt(result.run, result.events)
        driver.wake(run_id)
        return run_id


def start_child_services(engine: Engine) -> ChildStarter:
    """The services object the engine puts on step contexts."""
    return ChildStarter(engine)


async def _start_child(workflow_name: str, run_id: str, input: Any) -> str:
    ctx = current_step()
    services = None if ctx is None else ctx.services
    if ctx is None or not isinstance(services, ChildStarter):
        raise FatalError(f"{START_CHILD_STEP} runs only inside a worldflow Engine")
    return await services.start_child(ctx.workflow, workflow_name, run_id, input)


make_step(
    _start_child,
    name=START_CHILD_STEP,
    options=StepOptions(max_retries=10, backoff=Backoff.of(0.5)),
    builtin=True,
)
