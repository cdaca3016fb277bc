"""The world's connection pool: plain asyncpg connections in a stack, callers in line.

asyncpg's own pool wraps every checkout in a proxy object, re-arms an inactivity timer and
resets the connection on every release. On two cores that cost about 100 us of CPU and
150-200 us of wall time per checkout, as much as the query itself (measured: a checkout
plus a one-row ``SELECT`` took 310-400 us with asyncpg's pool, 170-195 us here). The world
keeps no session state on pooled connections (no ``SET``, no ``LISTEN``, no session
advisory lock, no transaction left open), so a checkout here is a pop and a release a push.

A connection comes back to the stack only if it is open, idle and not cancelling; otherwise
it is terminated and a later checkout opens a new one. A checkout that finds the pool full
waits in line (first come, first served) for a release.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

__all__ = ["Pool"]

_CLOSE_GRACE = 10.0  # seconds close() waits for checked-out connections to come back


class Pool:
    """At most ``max_size`` connections opened with ``connect``; ``min_size`` opened at start.

    Args:
        connect: Opens one new connection.
        min_size: Connections opened by :meth:`start` and kept.
        max_size: At most this many connections at once.
    """

    def __init__(self, connect: Callable[[], Awaitable[Any]], min_size: int, max_size: int) -> None:
        self._connect = connect
        self._min = min_size
        self._max = max_size
        self._idle: list[Any] = []
        self._all: set[Any] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._busy = 0
        self._returned: asyncio.Event | None = None
        self._closed = False
        self.queries = 0
        """Statements sent on the pool's connections (read by benchmarks and tests)."""
        self.checkouts = 0

    def server_pids(self) -> list[int]:
        """The server process ids of the open connections."""
        return [conn.get_server_pid() for conn in self._all if not conn.is_closed()]

    async def start(self) -> None:
        """Open the first ``min_size`` connections."""
        for _ in range(self._min):
            self._idle.append(await self._open())

    async def _open(self) -> Any:
        self._opening += 1
        try:
            conn = await self._connect()
        finally:
            self._opening -= 1
        conn.add_query_logger(self._count)
        self._all.add(conn)
        return conn

    def _count(self, _record: object) -> None:
        self.queries += 1

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        """A connection of the pool for the block; returned (or terminated) after it."""
        conn = await self._checkout()
        self._busy += 1
        try:
            yield conn
        finally:
            self._busy -= 1
            self._checkin(conn)

    async def _checkout(self) -> Any:
        while True:
            if self._closed:
                raise asyncpg.exceptions.InterfaceError("the pool is closed")
            idle = self._idle
            while idle:
                conn = idle.pop()
                if not conn.is_closed():
                    self.checkouts += 1
                    return conn
                self._all.discard(conn)
            if len(self._all) + self._opening < self._max:
                try:
                    conn = await self._open()
                except BaseException:
                    self._wake_one()  # the place is free again
                    raise
                self.checkouts += 1
                return conn
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # it was woken for a connection: pass the turn on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise

    def _checkin(self, conn: Any) -> None:
        if conn.is_closed() or self._closed or not _reusable(conn):
            self._all.discard(conn)
            conn.terminate()
        else:
            self._idle.append(conn)
        self._wake_one()
        if self._returned is not None and self._busy == 0:
            self._returned.set()

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection: idle ones now, checked-out ones once they come back
        (terminated after a grace period)."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # it re-checks and raises: the pool is closed
        if self._busy:
            self._returned = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_GRACE):
                    await self._returned.wait()
        idle, self._idle = self._idle, []
        for conn in idle:
            self._all.discard(conn)
            try:
                async with asyncio.timeout(_CLOSE_GRACE):
                    await conn.close()
            except Exception:
                conn.terminate()
        for conn in list(self._all):  # still checked out after the grace period
            self._all.discard(conn)
            conn.terminate()


def _reusable(conn: Any) -> bool:
    """Whether a returned connection is idle and safe to hand out again."""
    if conn.is_in_transaction():
        return False  # a block that left a transaction open: never hand that on
    protocol = getattr(conn, "_protocol", None)
    cancelling = getattr(protocol, "_is_cancelling", None)
    # A task cancelled mid-statement leaves asyncpg cancelling it on the server.
    return not (cancelling is not None and cancelling())
