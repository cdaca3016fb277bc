"""Asking the world for flow-control permits (``FlowControl``) on an engine's behalf.

A :class:`FlowGate` turns the :class:`~worldflow._limits.PermitAsk` s of a run or a step into
world calls tagged with this engine's id (so a permit lapses with the engine), and says how
long to wait before asking again when one is refused. Runs wait without a task (the driver
arms the run's timer for the next ask); step attempts wait in their task
(:meth:`FlowGate.wait_for`). A permit given back here wakes this engine's waiters on that
key at once; waiters in other processes ask again every ``poll`` seconds (or when a rate
window says a place frees).

A concurrency permit lapses at the world when its run ends, but a ``def`` step's thread
cannot be stopped: it may run on after its run was cancelled. Such a permit is *orphaned*
(:meth:`FlowGate.orphan`) until the thread ends and the step gives it back; meanwhile this
engine counts it on its key, so a new attempt granted a place the orphan still uses keeps
its permit (standing in for the thread, so other engines count it too) and waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from worldflow._limits import PermitAsk
from worldflow._runtime.ownership import RunOwner
from worldflow.errors import OwnershipLostError
from worldflow.worlds import World
from worldflow.worlds._clock import Clock

__all__ = ["FlowGate"]

log = logging.getLogger("worldflow.engine")

DEFAULT_POLL = 1.0  # seconds between asks of a refused permit (other engines may free it)


class FlowGate:
    """Permits for one engine's runs and steps.

    Args:
        world: The world holding the permits.
        clock: Time for waits between asks.
        owner: The engine's id (permits are tied to it).
        wake_run: Drive a run again now (a permit it waits for was freed here).
        poll: Seconds between asks of a refused permit.
    """

    def __init__(
        self,
        *,
        world: World,
        clock: Clock,
        owner: RunOwner,
        wake_run: Callable[[str], None],
        poll: float = DEFAULT_POLL,
    ) -> None:
        self._world = world
        self._clock = clock
        self._owner = owner
        self._wake_run = wake_run
        self.poll = poll
        self._runs_waiting: dict[str, set[str]] = {}  # key -> run ids waiting for it here
        self._freed: dict[str, asyncio.Event] = {}  # key -> set when a permit is given back
        self._orphans: dict[str, int] = {}  # key -> permits in use here whose run ended
        self.asks = 0
        """World calls made for permits (tests and benchmarks read it)."""

    async def try_acquire(
        self, asks: Sequence[PermitAsk], *, run_id: str, priority: int
    ) -> float | None:
        """Ask for every permit in order; ``None`` when all are held, else seconds to wait
        before asking again (the permits granted so far are kept: asking again is
        idempotent). Raises ``RunTerminalError`` / ``RunNotFoundError`` for a run that ended.
        """
        engine_id = self._owner.engine_id
        if engine_id is None:
            raise OwnershipLostError("this engine is not registered: it can hold no permit")
        for ask in asks:
            self.asks += 1
            grant = await self._world.acquire_permit(
                ask.key,
                ask.holder,
                run_id=run_id,
                engine_id=engine_id,
                limit=ask.limit,
                period=ask.period,
                priority=priority,
            )
            if not grant.granted:
                hint = grant.retry_after
                return self.poll if hint is None else max(0.001, min(hint, self.poll))
            orphans = self._orphans.get(ask.key, 0) if ask.period is None else 0
            if orphans and grant.held + orphans > ask.limit:
                return self.poll  # a thread of an ended run still uses a place: wait for it
        return None

    def run_waits(self, run_id: str, asks: Sequence[PermitAsk]) -> None:
        """``run_id`` waits for these keys: wake it when one is given back here."""
        for ask in asks:
            self._runs_waiting.setdefault(ask.key, set()).add(run_id)

    def run_admitted(self, run_id: str, asks: Sequence[PermitAsk]) -> None:
        """``run_id`` got its permits: it waits for nothing here any more."""
        for ask in asks:
            waiting = self._runs_waiting.get(ask.key)
            if waiting is not None:
                waiting.discard(run_id)
                if not waiting:
                    del self._runs_waiting[ask.key]

    async def wait_for(self, asks: Sequence[PermitAsk], *, run_id: str, priority: int) -> None:
        """Hold every permit (a step attempt): ask, and wait between asks until granted."""
        while True:
            delay = await self.try_acquire(asks, run_id=run_id, priority=priority)
            if delay is None:
                return
            events = [self._freed.setdefault(a.key, asyncio.Event()) for a in asks]
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
            waits.append(asyncio.ensure_future(self._clock.sleep(delay)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()

    def orphan(self, asks: Sequence[PermitAsk]) -> None:
        """The run of a step holding ``asks`` ended while the step still runs (its permits
        lapse at the world): count them here until :meth:`release` gives them back."""
        for ask in asks:
            if ask.period is None:
                self._orphans[ask.key] = self._orphans.get(ask.key, 0) + 1

    async def release(self, asks: Sequence[PermitAsk], *, orphaned: bool = False) -> None:
        """Give back the concurrency permits of ``asks`` (rate grants count out their
        period) and wake this engine's waiters on those keys. ``orphaned``: they were
        :meth:`orphan` ed (their run ended first)."""
        for ask in asks:
            if ask.period is not None:
                continue
            if orphaned:
                left = self._orphans.get(ask.key, 0) - 1
                if left > 0:
                    self._orphans[ask.key] = left
                else:
                    self._orphans.pop(ask.key, None)
            try:
                await self._world.release_permit(ask.key, ask.holder)
            except Exception:  # it lapses with the run's end or this engine's TTL anyway
                log.warning("giving back permit %s failed", ask.key, exc_info=True)
            self._wake(ask.key)

    def _wake(self, key: str) -> None:
        freed = self._freed.pop(key, None)
        if freed is not None:
            freed.set()
        for run_id in self._runs_waiting.pop(key, ()):
            self._wake_run(run_id)
