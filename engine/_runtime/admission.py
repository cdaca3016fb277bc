"""Whether a run may start (or go on) now: a delayed run waits for its ``start_at``, a run
with flow-control limits for its permits (:class:`~worldflow._runtime.flow.FlowGate`). A run
that may not is left with its timer armed for when to ask again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from worldflow._registry import WorkflowDefinition
from worldflow._runtime.flow import FlowGate
from worldflow._runtime.slot import Slot, aware
from worldflow._runtime.timers import RunTimers
from worldflow.errors import RunNotFoundError, RunTerminalError
from worldflow.worlds import WorkflowRun
from worldflow.worlds._clock import Clock

__all__ = ["RunAdmission"]


class RunAdmission:
    """Admits runs past their delay and their flow-control limits.

    Args:
        flow: The world-held permits.
        clock: Time, for delays and the next ask.
        timers: The runs' timers.
    """

    def __init__(self, *, flow: FlowGate, clock: Clock, timers: RunTimers) -> None:
        self.flow = flow
        self.clock = clock
        self.timers = timers

    def not_yet(self, slot: Slot, start_at: datetime) -> bool:
        """Whether a delayed run is not due yet (then its timer is armed for when it is)."""
        at = aware(start_at)
        if at <= self.clock.now():
            return False
        self.timers.arm(slot, at)
        return True

    async def admit(
        self, slot: Slot, run: WorkflowRun, definition: WorkflowDefinition, *, starting: bool
    ) -> bool:
        """Take the run's flow-control permits (its rate permit only when ``starting``);
        False when one is refused (the run's timer is then armed for the next ask)."""
        limits = definition.limits
        assert limits is not None
        args: tuple[Any, ...] | None = None
        kwargs: dict[str, Any] | None = None
        if limits.needs_arguments:
            args, kwargs = definition.decode_input(run.input)
        asks = limits.asks(run.run_id, args, kwargs, resource_id=run.resource_id, rate=starting)
        if not asks:
            return True
        try:
            delay = await self.flow.try_acquire(asks, run_id=run.run_id, priority=run.priority)
        except RunTerminalError:
            slot.again = True  # ended meanwhile: wrap it up
            return False
        except RunNotFoundError:
            return False  # purged
        if delay is None:
            self.flow.run_admitted(run.run_id, asks)
            slot.permits = [a for a in asks if a.period is None] or None
            return True
        self.flow.run_waits(run.run_id, asks)
        self.timers.arm(slot, self.clock.now() + timedelta(seconds=delay))
        return False
