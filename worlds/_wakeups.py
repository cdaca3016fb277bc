"""Broadcast wake-ups for in-process waiters, with timeouts measured on a world's clock.

A :class:`Signal` wakes every task waiting on it when it fires; firing with nobody waiting
costs one attribute read, so writers can fire on every append. Timeouts go through
:meth:`Clock.sleep` rather than ``asyncio.timeout`` so a virtual clock (which jumps to the next
pending sleep when every task is blocked) decides when a timed wait ends; on the system clock
the loop's own timer does the same job more cheaply.
"""

from __future__ import annotations

import asyncio

from worldflow.worlds._clock import Clock, SystemClock

__all__ = ["Signal", "wait_for_event"]


class Signal:
    """A one-to-many wake-up: :meth:`fire` wakes every task that took :meth:`waiter` before.

    Waiters must re-check their condition after waking (a fire says "something changed",
    not what), and take the waiter *before* checking, so a fire in between is not lost.
    """

    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def waiter(self) -> asyncio.Event:
        """The event the next :meth:`fire` sets."""
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            # A world may outlive an event loop (one per test); an event left unfired by a
            # waiter of a finished loop must not be handed to a waiter on the next one.
            self._event = asyncio.Event()
            self._loop = loop
        return self._event

    def fire(self) -> None:
        """Wake everyone waiting now; later waiters wait for the next fire."""
        event = self._event
        if event is not None:
            self._event = None
            event.set()


async def wait_for_event(event: asyncio.Event, timeout: float | None, clock: Clock) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds of ``clock`` time pass.

    Returns whether the event was set. ``timeout=None`` waits forever; ``timeout <= 0``
    only checks.
    """
    if event.is_set():
        return True
    if timeout is None:
        await event.wait()
        return True
    if timeout <= 0:
        return False
    if type(clock) is SystemClock:  # real time: the loop's own timer, no extra tasks
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        return event.is_set()
    wake = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait((wake, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        wake.cancel()
        timer.cancel()
    return event.is_set()
