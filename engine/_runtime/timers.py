"""A run's one timer in the driver: armed for the run's next due time (a sleep, a retry's
backoff, a delayed start, a refused permit's next ask), it drives the run when it fires.

Each slot holds at most one timer task (``slot.timer``, due at ``slot.timer_at``); arming it
again for another time replaces it. A timer is a cache of the log too: a rebuild re-arms it
from the instance's waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from worldflow._runtime.slot import Slot
from worldflow.worlds._clock import Clock

__all__ = ["RunTimers", "Spawn"]

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any] | None"]


class RunTimers:
    """Arms and disarms the runs' timers.

    Args:
        clock: Time the timers sleep on.
        spawn: Starts an engine-owned task (``None`` once the engine is closing).
        drive: Drives a run (called when its timer fires).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        spawn: Spawn,
        drive: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        self.clock = clock
        self._spawn = spawn
        self._drive = drive

    def arm(self, slot: Slot, at: datetime) -> None:
        """Drive the run at ``at`` (replacing a timer armed for another time)."""
        if slot.timer is not None and slot.timer_at == at:
            return
        self.disarm(slot)
        task = self._spawn(self._timer(slot, at), f"timer {slot.run_id}")
        if task is not None:
            slot.timer = task
            slot.timer_at = at

    def disarm(self, slot: Slot) -> None:
        """Cancel the run's timer, if it has one (not from within the timer itself)."""
        timer = slot.timer
        if timer is not None:
            slot.timer = None
            slot.timer_at = None
            if timer is not asyncio.current_task():
                timer.cancel()

    async def _timer(self, slot: Slot, at: datetime) -> None:
        delay = (at - self.clock.now()).total_seconds()
        if delay > 0:
            await self.clock.sleep(delay)
        if slot.timer is asyncio.current_task():
            slot.timer = None
            slot.timer_at = None
        await self._drive(slot.run_id)
