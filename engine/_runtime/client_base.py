"""The state every part of a :class:`~worldflow.Client` shares: its world (opened on enter
if it owns it), its clock and telemetry, and the hooks an :class:`~worldflow.Engine` overrides
to change what happens after a write.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self, cast

from worldflow._registry import StepDefinition, WorkflowDefinition, WorkflowFunction
from worldflow._runtime.handoff import enqueue_run
from worldflow._runtime.telemetry import ObservedWorld, Telemetry
from worldflow.errors import EngineNotRunningError, WorkflowNotRegisteredError
from worldflow.worlds import EventResult, RunCreated, World, open_world
from worldflow.worlds._clock import Clock, SystemClock

__all__ = ["ClientBase"]


class ClientBase:
    """A client's world, clock and telemetry (see :class:`~worldflow.Client`)."""

    def __init__(
        self,
        world: World | None = None,
        *,
        clock: Clock | None = None,
        telemetry: Telemetry | bool | None = None,
    ) -> None:
        self._world = world
        self._owns_world = world is None
        self._clock = clock
        self.telemetry: Telemetry | None = (
            Telemetry.default() if telemetry is True else telemetry or None
        )
        self._observed: ObservedWorld | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def _open(self) -> World:
        """The world, opened if this client owns it; the clock picked."""
        if self._world is None:
            self._world = await open_world()
        if self._clock is None:
            world_clock = getattr(self._world, "clock", None)
            self._clock = world_clock if isinstance(world_clock, Clock) else SystemClock()
        return self._world

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the world if this client opened it. Idempotent."""
        if self._owns_world and self._world is not None:
            world, self._world = self._world, None
            await world.aclose()

    @property
    def world(self) -> World:
        """The world this client works on."""
        if self._world is None:
            raise EngineNotRunningError(
                "this client opens its default world on enter: use `async with`"
            )
        return self._world

    @property
    def _writes(self) -> World:
        """The world appends go through: the world itself, or the world observed by the
        client's telemetry (spans and counters are made from what is stored)."""
        if self.telemetry is None:
            return self.world
        if self._observed is None or self._observed.wrapped is not self.world:
            self._observed = ObservedWorld(self.world, self.telemetry)
        return cast(World, self._observed)  # every role forwarded to the world underneath

    async def _trace_context(self, run_id: str) -> dict[str, str]:
        """The trace context a run was started with (``{}`` without telemetry)."""
        if self.telemetry is None or self.telemetry.tracer is None:
            return {}
        return await self.telemetry.context_of(self.world, run_id)

    @property
    def clock(self) -> Clock:
        """The clock ``Run.result(timeout=)`` waits on (the world's, unless one was given)."""
        if self._clock is None:
            world_clock = getattr(self.world, "clock", None)
            self._clock = world_clock if isinstance(world_clock, Clock) else SystemClock()
        return self._clock

    # -- what an engine changes --------------------------------------------------------------

    def _definition(self, workflow: Any) -> WorkflowDefinition | None:
        """The definition of ``workflow`` if this process has its code (a name resolves in an
        engine's registry); ``None`` for a name to look up in the catalog."""
        if isinstance(workflow, WorkflowFunction):
            return workflow.definition
        if isinstance(workflow, WorkflowDefinition):
            return workflow
        if isinstance(workflow, str):
            return None
        raise WorkflowNotRegisteredError(
            f"{workflow!r} is not a workflow: pass a @workflow function or its registered name"
        )

    async def _created(self, result: EventResult) -> None:
        """A run was just created by this client: hand it to an engine."""
        await enqueue_run(self.world, result.run)

    async def _woken(self, result: EventResult) -> None:
        """Something was appended for a run: let whoever drives it know."""
        if result.events:
            await enqueue_run(self.world, result.run)

    async def _cancelled(self, result: EventResult) -> None:
        """A run was cancelled: its owner stops its steps when it drives it."""
        await self._woken(result)

    def _purged(self, run_id: str) -> None:
        """A run was purged (an engine forgets its cache of it)."""

    def _start_events(self, created: RunCreated, served: bool) -> tuple[list[Any], Any]:
        """The first batch of a new run and its fence (an engine starts what it serves,
        unless it is delayed or has flow-control limits: its driver starts it)."""
        return [created], None

    def _serves(self, workflow_name: str) -> bool:
        """Whether this process drives runs of ``workflow_name`` (an engine that has it)."""
        return False

    def _step_definition(self, name: str) -> StepDefinition | None:
        """The step's code if this process has it (an engine's registry)."""
        return None
