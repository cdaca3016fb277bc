"""A virtual clock: workflows sleep for days in milliseconds of a test.

:class:`VirtualClock` implements :class:`worldflow.worlds.Clock`. Its time stands still until
something moves it: :meth:`VirtualClock.advance` by hand, or, with ``auto_advance`` (the
default), a helper task that waits until the event loop has nothing else to do and then jumps
to the earliest pending :meth:`~VirtualClock.sleep`. Give the same clock to the world and the
engine (``MemoryWorld(clock=clock)``; the engine takes its world's clock) and every timer,
retry backoff, lease and ``Run.result(timeout=)`` runs on it.

"Nothing else to do" means: no callback is ready to run on the loop (checked after letting
the loop poll for I/O that has already arrived), no job started with ``asyncio.to_thread`` /
``loop.run_in_executor(None, ...)`` is still running (the clock installs a default executor
on the loop that counts its jobs; sync steps run there), and no real ``asyncio.sleep()`` ends
within ``real_timer_horizon`` seconds (a step awaiting ``asyncio.sleep(0.05)`` as a stand-in
for a network call; timeouts do not count). I/O that has not arrived yet (a socket read in
flight, a thread the clock does not know about) does not hold time back; ``idle_delay`` makes
the clock wait that many real seconds of quiet before each jump, for tests that mix virtual
time with real I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

__all__ = ["DEFAULT_START", "VirtualClock"]

T = TypeVar("T")

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
"""Where a :class:`VirtualClock` starts unless told otherwise."""

_Sleeper = tuple[float, int, "asyncio.Future[None]"]
# Tasks waiting for their loop to be idle, per loop (see VirtualClock._settle).
_SETTLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


def _next_real_sleep(loop: asyncio.AbstractEventLoop) -> float | None:
    """Seconds until the earliest real ``asyncio.sleep()`` on the loop ends, if one is pending.

    Only sleeps count (a step standing in for a network call): a timeout's timer
    (``asyncio.timeout``, ``wait_for``, a test's safety net) is not work in progress.
    """
    scheduled = getattr(loop, "_scheduled", None)  # CPython's timer heap (see _ready_callbacks)
    if not scheduled:
        return None
    wake = asyncio.futures._set_result_unless_cancelled  # type: ignore[attr-defined]
    due = [
        h.when() for h in scheduled if not h.cancelled() and getattr(h, "_callback", None) is wake
    ]
    return max(0.0, min(due) - loop.time()) if due else None


def _ready_callbacks(loop: asyncio.AbstractEventLoop) -> int:
    # CPython's BaseEventLoop keeps its ready queue in `_ready`; no public API says whether a
    # loop is idle. A loop without it (uvloop) counts as busy, and then only advance() moves
    # time.
    ready = getattr(loop, "_ready", None)
    return len(ready) if ready is not None else 1


class _CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor while a virtual clock runs on it: counts jobs in flight.

    A job counts until its result has been handed to the loop, not merely computed: the
    future :meth:`submit` returns runs its done-callbacks (``run_in_executor``'s, which post
    the result to the loop) in the worker thread first, and only then is the end of the job
    posted. Posted the other way round, the loop could see no job, go idle and jump the
    clock before the awaiting task got its result (a sync step's completion recorded after
    the next timer fired).
    """

    def __init__(self, clock: VirtualClock, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(thread_name_prefix="worldflow-virtual-clock")
        self._clock = clock
        self._loop = loop

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        outer: Future[T] = Future()

        def work() -> None:
            try:
                if not outer.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    outer.set_exception(exc)
                else:
                    outer.set_result(result)  # runs the callbacks: the result is posted
            finally:
                self._done()  # ...and then the end of the job

        self._clock._jobs += 1
        try:
            inner = super().submit(work)
        except BaseException:
            self._clock._jobs -= 1
            raise

        def never_ran(inner: Future[None]) -> None:
            if inner.cancelled():  # shut down with cancel_futures before `work` ran
                outer.cancel()
                self._done()

        inner.add_done_callback(never_ran)
        return outer

    def _done(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._clock._job_done)
        except RuntimeError:  # the loop is closed: nobody waits for the count any more
            pass


class VirtualClock:
    """A clock whose time moves only when the test (or idleness) says so.

    Args:
        start: The clock's initial time (timezone-aware); default 2024-01-01 00:00 UTC.
        auto_advance: Jump to the next pending sleep whenever the event loop is idle.
        idle_delay: Real seconds the loop must stay idle before an automatic jump (0: jump
            at once). Raise it when a test also waits on real I/O.
        real_timer_horizon: A real ``asyncio.sleep()`` (standing in for a network call in a
            step) that ends within this many real seconds counts as work in progress: time
            waits for it. Longer sleeps, and timeouts (``asyncio.timeout``, a test's safety
            net), do not. 0 disables this.

    An engine that consumes the world's queues waits on them a few seconds of clock time at a
    time, so the clock would crawl through a long sleep in those steps: give such an engine
    ``consume_queues=False`` (``memory_engine`` and the pytest fixtures do).

    Example::

        clock = VirtualClock()
        world = MemoryWorld(clock=clock)
        async with Engine(world, [onboarding], consume_queues=False) as engine:
            run = await engine.start(onboarding, "u-1")   # sleeps for 3 days
            await run.result(timeout=7 * 86400)             # returns in milliseconds
    """

    def __init__(
        self,
        start: datetime = DEFAULT_START,
        *,
        auto_advance: bool = True,
        idle_delay: float = 0.0,
        real_timer_horizon: float = 1.0,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError(f"VirtualClock(start=...) must be timezone-aware, got {start!r}")
        if idle_delay < 0:
            raise ValueError(f"idle_delay must be >= 0, got {idle_delay!r}")
        if real_timer_horizon < 0:
            raise ValueError(f"real_timer_horizon must be >= 0, got {real_timer_horizon!r}")
        self.real_timer_horizon = real_timer_horizon
        self._now = start.timestamp()
        self._tz = start.tzinfo
        self.auto_advance = auto_advance
        self.idle_delay = idle_delay
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._advancer: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._jobs = 0
        self.jumps = 0
        """How many times the clock jumped forward by itself (tests read it)."""

    def __repr__(self) -> str:
        return f"VirtualClock({self.now().isoformat()}, {len(self.pending())} sleeping)"

    # -- the Clock protocol ----------------------------------------------------------------------

    def now(self) -> datetime:
        """The clock's current time."""
        if self._loop is None or self._loop.is_closed():
            # Take the loop early (worlds read the time at every append), so worker threads
            # started before the first sleep are counted too.
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                self._bind()
        return datetime.fromtimestamp(self._now, UTC).astimezone(self._tz)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` forward (``<= 0``: just yield)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = self._bind()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        self._wake_advancer()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()  # dropped lazily from the heap

    # -- moving time by hand -------------------------------------------------------------------

    async def advance(self, seconds: float | timedelta) -> int:
        """Let ``seconds`` of time pass: wake each sleeper at its deadline, in order, and let
        the loop run until idle after each (a woken task that sleeps again before the target
        is woken too). Returns how many sleeps ended.
        """
        delta = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if delta < 0:
            raise ValueError(f"a clock only moves forward; advance({seconds!r})")
        return await self._run_until(self._now + delta)

    async def advance_to(self, when: datetime) -> int:
        """Let time pass until ``when`` (nothing happens if it is not later); see
        :meth:`advance`."""
        if when.tzinfo is None:
            raise ValueError(f"advance_to() needs a timezone-aware datetime, got {when!r}")
        return await self._run_until(max(self._now, when.timestamp()))

    def pending(self) -> list[datetime]:
        """When the pending sleeps end, earliest first."""
        return [
            datetime.fromtimestamp(at, UTC).astimezone(self._tz)
            for at, _, future in sorted(self._sleepers)
            if not future.done()
        ]

    def next_deadline(self) -> datetime | None:
        """When the earliest pending sleep ends, or ``None``."""
        self._drop_cancelled()
        if not self._sleepers:
            return None
        return datetime.fromtimestamp(self._sleepers[0][0], UTC).astimezone(self._tz)

    async def until_idle(self) -> None:
        """Return once the event loop has nothing to run (see the module docstring)."""
        self._bind()
        await self._settle()

    # -- internals -----------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "this VirtualClock is in use on another event loop; make one clock per "
                    "loop (per test)"
                )
            # A new loop (the previous one is closed): forget what belonged to the old one.
            self._loop = loop
            self._sleepers = []
            self._advancer = None
            self._kick = asyncio.Event()
            self._jobs = 0
            loop.set_default_executor(_CountingExecutor(self, loop))
        return loop

    async def _run_until(self, target: float) -> int:
        self._bind()
        woken = 0
        while True:
            await self._settle()
            self._drop_cancelled()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            woken += self._wake_next()
        self._now = max(self._now, target)
        await self._settle()
        return woken

    def _wake_next(self) -> int:
        """Move to the earliest deadline and wake every sleeper due then."""
        self._drop_cancelled()
        at = self._sleepers[0][0]
        self._now = max(self._now, at)
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= at:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
                woken += 1
        return woken

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _job_done(self) -> None:
        self._jobs -= 1
        if self._kick is not None:
            self._kick.set()

    def _wake_advancer(self) -> None:
        if not self.auto_advance:
            return
        if self._kick is not None:
            self._kick.set()
        if self._advancer is None or self._advancer.done():
            loop = self._bind()
            self._advancer = loop.create_task(self._advance(), name="worldflow virtual clock")

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        kick = self._kick
        assert kick is not None
        _SETTLERS[loop] = _SETTLERS.get(loop, 0) + 1
        try:
            quiet = 0
            while quiet < 2:
                if self._jobs > 0:
                    kick.clear()
                    if self._jobs > 0:
                        await kick.wait()
                    quiet = 0
                    continue
                # One yield lets everything ready run and the loop poll for I/O that has
                # arrived; two quiet rounds in a row mean nothing woke anything. Other tasks
                # settling the same way each keep exactly one callback ready: not work.
                await asyncio.sleep(0)
                others = _SETTLERS.get(loop, 1) - 1
                quiet = quiet + 1 if _ready_callbacks(loop) <= others else 0
                if quiet == 2 and self.real_timer_horizon > 0:
                    due = _next_real_sleep(loop)
                    if due is not None and due <= self.real_timer_horizon:
                        await asyncio.sleep(due)  # a short real wait in progress: let it end
                        quiet = 0
        finally:
            _SETTLERS[loop] -= 1

    async def _advance(self) -> None:
        """Jump to the earliest sleep whenever the loop is idle; end when nobody sleeps."""
        while True:
            self._drop_cancelled()
            if not self._sleepers:
                return
            await self._settle()
            if self.idle_delay > 0:
                await asyncio.sleep(self.idle_delay)
                await self._settle()
            self._drop_cancelled()
            if not self._sleepers:
                return
            self.jumps += 1
            self._wake_next()
