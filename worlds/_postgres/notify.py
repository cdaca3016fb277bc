"""Wake-ups across processes: a dedicated LISTEN connection, a coalescing notifier, signals.

NOTIFY is a latency hint here, never the source of truth: every waiter also re-reads its
state on a bounded poll, so a lost notification (a listener that was disconnected, a
dropped connection without a FIN) costs at most one poll interval, never a hang.

* In-process waiters wait on :class:`Signal` s, fired at once by this process's own writes
  and by notifications from other processes.
* Appends announce log growth on ``<schema>_log`` (payload ``run_id:last_seq`` items joined
  by ``,``). Urgent ones (terminal, external events) notify in the append statement itself;
  the others are coalesced by :class:`Notifier` into one ``pg_notify`` every few ms, since a
  NOTIFY in every append serializes commits on a database-wide lock. An urgent append also
  carries what the notifier has pending (:meth:`Notifier.take`), so a run's appends cost
  one NOTIFY at its end and no statement of their own.
* ``<schema>_queue`` (a queue name) is sent by ``enqueue`` for a message due now.
* :class:`Listener` owns one connection outside the pool, in autocommit, never in a
  transaction. On loss it reconnects with capped backoff, re-LISTENs and resyncs: every
  local waiter is woken to re-read.
* Nobody else, no NOTIFY: a NOTIFY costs its statement a database-wide lock at commit
  (about 0.3 ms here), so news (of the log, of streams, of the queue) is sent only while
  another process may hear it (:attr:`Listener.peers`). A listener says hello (``h:``) on
  the log channel as it starts listening, which every other instance takes as "someone
  listens"; the health check, every few seconds, looks for another process's sessions of
  the world (by their ``application_name``) and clears the flag when there are none; so does
  the first look, when the listener starts. A session of another process that exists when an
  instance looks counts, and a hello heard while it looks keeps the flag set.
* A newcomer does not wait for its poll to hear what was not sent. An instance that was
  alone and hears a hello answers with a catch-up (``r:``): every listener that hears it
  resyncs (as after a reconnect), so it re-reads whatever was written silently before the
  hello was heard. A statement that was decided silent and ends after the hello was heard
  announces its news then, through the notifier (:meth:`Notifier.add` is gated again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any, Final

import asyncpg

from worldflow.worlds._wakeups import Signal

__all__ = [
    "CATCH_UP",
    "CONNECTION_ERRORS",
    "HELLO",
    "MAX_PAYLOAD",
    "Listener",
    "Notifier",
    "Signals",
]

log = logging.getLogger("worldflow.worlds.postgres")

MAX_PAYLOAD: Final = 7900  # NOTIFY payloads must stay under 8000 bytes
_HEALTH_EVERY: Final = 5.0
HELLO: Final = "h:"
"""What a listener sends on the log channel once it listens: "here is another process"."""
CATCH_UP: Final = "r:"
"""What an instance that was alone sends on hearing a hello: "re-read, I wrote silently"."""

CONNECTION_ERRORS: Final = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    OSError,
)
"""Errors after which a statement's outcome is unknown (it may or may not have committed),
and after which the listener reconnects."""


class Signals:
    """Named in-process signals, made on demand and forgotten once fired."""

    __slots__ = ("_signals",)

    def __init__(self) -> None:
        self._signals: dict[str, Signal] = {}

    def waiter(self, key: str) -> asyncio.Event:
        """The event the next :meth:`fire` of ``key`` sets (take it before checking)."""
        signal = self._signals.get(key)
        if signal is None:
            signal = self._signals[key] = Signal()
        return signal.waiter()

    def fire(self, key: str) -> None:
        """Wake the waiters of ``key``."""
        signal = self._signals.pop(key, None)
        if signal is not None:
            signal.fire()

    def fire_all(self) -> None:
        """Wake every waiter (after a reconnect, or on close)."""
        signals, self._signals = self._signals, {}
        for signal in signals.values():
            signal.fire()


class Notifier:
    """Sends the non-urgent "log grew" notifications in coalesced batches.

    Args:
        pool: The world's pool (one short statement per flush).
        channel: The ``<schema>_log`` channel.
        wanted: Whether anyone else may listen now (else news is dropped, not sent).
        interval: Seconds between flushes while there is something to send.
    """

    def __init__(
        self, pool: Any, channel: str, wanted: Callable[[], bool], interval: float = 0.010
    ) -> None:
        self._pool = pool
        self._channel = channel
        self.wanted = wanted
        self._interval = interval
        self._pending: dict[str, None] = {}
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0

    def add(self, item: str) -> None:
        """Announce ``item`` (``run_id:last_seq`` or ``s:run_id``) with the next flush."""
        if not self.wanted():
            return
        self._pending[item] = None
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush_soon())

    def take(self, room: int) -> list[str]:
        """Hand over pending items, at most ``room`` characters of payload (joined by
        ``,``), for a statement that notifies anyway; :meth:`add` them back if it fails."""
        pending = self._pending
        taken: list[str] = []
        for item in pending:
            room -= len(item) + 1
            if room < 0:
                break
            taken.append(item)
        for item in taken:
            del pending[item]
        return taken

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(self._interval)
            await self.flush()
        finally:
            self._task = None
            if self._pending:
                self._task = asyncio.ensure_future(self._flush_soon())

    async def flush(self) -> None:
        """Send what is pending now."""
        items, self._pending = list(self._pending), {}
        if not items or not self.wanted():
            return
        payloads: list[str] = []
        current: list[str] = []
        size = 0
        for item in items:
            if current and size + len(item) + 1 > MAX_PAYLOAD:
                payloads.append(",".join(current))
                current, size = [], 0
            current.append(item)
            size += len(item) + 1
        payloads.append(",".join(current))
        self.flushes += 1
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                    self._channel,
                    payloads,
                )
        except Exception as exc:  # a hint only: waiters poll anyway
            log.debug("coalesced NOTIFY failed: %r", exc)

    async def aclose(self) -> None:
        """Send what is pending and stop."""
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()


Handler = Callable[[str, str], None]


class Listener:
    """One LISTEN connection with health checks, reconnects and a resync after each.

    Args:
        connect: Opens a new connection (outside the pool).
        channels: The channels to LISTEN on.
        on_notify: Called with ``(channel, payload)`` for each notification.
        on_resync: Called after every (re)connect: wake everyone, something may be missed.
        application_name: The one every connection of the world has (peers are sessions
            with it, of other processes).
        own_pids: The server pids of this instance's pooled connections (not peers).
    """

    def __init__(
        self,
        connect: Callable[[], Coroutine[Any, Any, Any]],
        channels: list[str],
        on_notify: Handler,
        on_resync: Callable[[], None],
        application_name: str,
        own_pids: Callable[[], list[int]],
    ) -> None:
        self._connect = connect
        self._channels = channels
        self._on_notify = on_notify
        self._on_resync = on_resync
        self._application_name = application_name
        self._own_pids = own_pids
        self.peers = True
        """Whether another process may be listening (see the module's docstring)."""
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._poked = asyncio.Event()  # lost, or a catch-up to send
        self._catch_up = False
        self._hellos = 0
        self._busy = asyncio.Lock()  # one statement at a time on the connection
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0
        self.catch_ups_sent = 0
        self.resyncs = 0
        """Resyncs after a reconnect or a catch-up heard (tests count them)."""

    @property
    def connection(self) -> Any:
        """The current listening connection (tests terminate its backend)."""
        return self._conn

    async def start(self) -> None:
        """Connect, LISTEN and look for peers, then supervise the connection."""
        await self._open()
        await self.check_peers()
        self._task = asyncio.ensure_future(self._supervise())

    def _callback(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload in (HELLO, CATCH_UP):
            if pid == conn.get_server_pid():  # our own
                return
            if payload == CATCH_UP:
                self._resync()
                return
            self._hellos += 1
            if not self.peers:  # this instance wrote silently: the newcomer must re-read
                self._catch_up = True
                self._poked.set()
            self.peers = True
            return
        try:
            self._on_notify(channel, payload)
        except Exception:  # pragma: no cover - a handler bug must not kill the listener
            log.exception("notification handler failed")

    def _resync(self) -> None:
        self.resyncs += 1
        self._on_resync()

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost.set()
            self._poked.set()

    async def _open(self) -> None:
        conn = await self._connect()
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._callback)
            conn.add_termination_listener(self._terminated)
            await conn.execute(f"NOTIFY {self._channels[0]}, '{HELLO}'")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._lost.clear()
        self.peers = True  # until the next look: we may have missed a hello

    def _stopped(self) -> bool:
        return self._closing

    async def _supervise(self) -> None:
        while not self._closing:
            if not self._catch_up:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_HEALTH_EVERY):
                        await self._poked.wait()
            self._poked.clear()
            if self._stopped():
                return
            conn = self._conn
            if not self._lost.is_set() and conn is not None and not conn.is_closed():
                try:
                    async with asyncio.timeout(_HEALTH_EVERY):
                        if self._catch_up:
                            await self._send_catch_up(conn)
                        else:
                            await self.check_peers()
                    continue
                except (TimeoutError, *CONNECTION_ERRORS):
                    pass
            await self._reconnect()

    async def _send_catch_up(self, conn: Any) -> None:
        # On the listening connection, whose pid its own callback knows (and ignores).
        try:
            async with self._busy:
                await conn.execute(f"NOTIFY {self._channels[0]}, '{CATCH_UP}'")
        except asyncpg.exceptions.PostgresError as exc:  # a refusal, not a lost connection
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            log.debug("catch-up NOTIFY refused (%r): newcomers re-read on their poll", exc)
        else:
            self.catch_ups_sent += 1
        self._catch_up = False

    async def check_peers(self) -> bool:
        """Look for another process's sessions of the world now (the health check does it
        every few seconds); set and return :attr:`peers`."""
        conn = self._conn
        if conn is None:
            self.peers = True
            return True
        own = [conn.get_server_pid(), *self._own_pids()]
        hellos = self._hellos
        try:
            async with self._busy:
                found = await conn.fetchval(_PEERS_SQL, self._application_name, own)
        except asyncpg.exceptions.PostgresError as exc:  # not a lost connection: a refusal
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            log.debug("could not look for peers (%r): notifying anyway", exc)
            found = True
        # A hello heard while looking is a newcomer the look may have missed.
        self.peers = bool(found) or self._hellos != hellos
        return self.peers

    async def _reconnect(self) -> None:
        old, self._conn = self._conn, None
        if old is not None:
            old.terminate()
        # Deaf, a hello would be missed: notify until the next look. What was written
        # silently before is caught up once listening again.
        self._catch_up = self._catch_up or not self.peers
        self.peers = True
        delay = 0.05
        while not self._closing:
            try:
                await self._open()
            except (TimeoutError, *CONNECTION_ERRORS) as exc:
                log.warning("listener reconnect failed (%r); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)
                continue
            self.reconnects += 1
            self._resync()
            return

    async def aclose(self) -> None:
        """Stop supervising and close the connection."""
        self._closing = True
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(2):
                    await conn.close()
            except (TimeoutError, *CONNECTION_ERRORS):
                conn.terminate()


_PEERS_SQL: Final = """
    SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
        AND application_name = $1 AND pid <> ALL($2::int[]))"""
