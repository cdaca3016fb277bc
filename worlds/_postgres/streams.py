"""Streams on PostgreSQL: a ``streams`` row per stream, a ``stream_chunks`` row per chunk.

``write_stream`` is one statement: it locks the run row (``FOR KEY SHARE``, so a purge cannot
slip in between and leave orphan chunks), raises the stream's ``length`` only while it is
open, and inserts the chunks at the old length onward. The row lock on ``streams`` serializes
writers, so indexes stay dense across processes. Readers follow with signals fired by this
process's writes and by the other processes' coalesced notifications, on a bounded poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    RunNotFoundError,
    StreamNotFoundError,
)
from worldflow.worlds._clock import Clock
from worldflow.worlds._postgres.notify import Signals
from worldflow.worlds._records import TERMINAL_RUN_STATUSES, RunStatus, StreamChunk, StreamInfo
from worldflow.worlds._wakeups import wait_for_event

__all__ = ["PostgresStreams"]

_POLL: Final = 1.0
_READ_BATCH: Final = 1000


class PostgresStreams:
    """Stream operations of one world instance.

    Args:
        pool: The world's pool.
        schema: The checked schema name.
        signals: The world's signals (keyed ``s:<run_id>``).
        clock: For the bounded waits.
        on_change: Called with the run id after a write or close (feeds the notifier).
        check_open: Raises if the world was closed.
    """

    def __init__(
        self,
        pool: Any,
        schema: str,
        signals: Signals,
        clock: Clock,
        on_change: Callable[[str], None],
        check_open: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._signals = signals
        self._clock = clock
        self._on_change = on_change
        self._check_open = check_open
        s = schema
        self._write_sql = f"""
            WITH r AS (SELECT run_id FROM {s}.runs WHERE run_id = $1 FOR KEY SHARE),
            st AS (
                INSERT INTO {s}.streams (run_id, name, length) SELECT $1, $2, $3 FROM r
                ON CONFLICT (run_id, name) DO UPDATE SET length = {s}.streams.length + $3
                WHERE NOT {s}.streams.closed
                RETURNING length),
            ch AS (
                INSERT INTO {s}.stream_chunks (run_id, name, idx, data)
                SELECT $1, $2, (SELECT length FROM st) - $3 + u.i - 1, u.d
                FROM unnest($4::bytea[]) WITH ORDINALITY AS u(d, i)
                WHERE EXISTS (SELECT 1 FROM st))
            SELECT (SELECT length FROM st) AS length, EXISTS (SELECT 1 FROM r) AS found"""
        self._close_sql = f"""
            WITH r AS (SELECT run_id FROM {s}.runs WHERE run_id = $1 FOR KEY SHARE),
            st AS (
                INSERT INTO {s}.streams (run_id, name, length, closed)
                SELECT $1, $2, 0, true FROM r
                ON CONFLICT (run_id, name) DO UPDATE SET closed = true
                WHERE NOT {s}.streams.closed RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM r) AS found, EXISTS (SELECT 1 FROM st) AS changed"""
        self._state_sql = f"""
            SELECT r.status, st.length, st.closed FROM {s}.runs r
            LEFT JOIN {s}.streams st ON st.run_id = r.run_id AND st.name = $2
            WHERE r.run_id = $1"""
        self._chunks_sql = f"""
            SELECT idx, data FROM {s}.stream_chunks
            WHERE run_id = $1 AND name = $2 AND idx >= $3 ORDER BY idx LIMIT $4"""
        self._list_sql = f"""
            SELECT 0 AS k, 0::bigint AS pos, NULL::text AS name, 0::bigint AS length,
                   false AS closed FROM {s}.runs WHERE run_id = $1
            UNION ALL SELECT 1, pos, name, length, closed FROM {s}.streams WHERE run_id = $1
            ORDER BY k, pos"""

    async def write(self, run_id: str, name: str, chunks: Sequence[bytes]) -> int:
        """Append chunks; return the stream's new length."""
        data: list[bytes] = []
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidEventError(
                    f"stream chunk {i} is a {type(chunk).__name__}; chunks are bytes"
                )
            data.append(bytes(chunk))
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._write_sql, run_id, name, len(data), data)
        if not row["found"]:
            raise RunNotFoundError(f"no run {run_id!r} in this world")
        if row["length"] is None:
            raise EntityConflictError(f"stream {name!r} of run {run_id!r} is closed")
        self._changed(run_id)
        return int(row["length"])

    async def close(self, run_id: str, name: str) -> None:
        """Mark the stream finished (idempotent)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._close_sql, run_id, name)
        if not row["found"]:
            raise RunNotFoundError(f"no run {run_id!r} in this world")
        if row["changed"]:
            self._changed(run_id)

    def _changed(self, run_id: str) -> None:
        self._signals.fire(f"s:{run_id}")
        self._on_change(run_id)

    async def read(
        self, run_id: str, name: str, start: int, follow: bool
    ) -> AsyncIterator[StreamChunk]:
        """Chunks from ``start``; with ``follow``, wait for more until the stream is closed."""
        index = max(0, start)
        key = f"s:{run_id}"
        while True:
            self._check_open()
            woken = self._signals.waiter(key)  # before looking, so no write is missed
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(self._state_sql, run_id, name)
                if row is None:
                    raise RunNotFoundError(f"no run {run_id!r} in this world")
                rows: list[Any] = []
                if row["length"] is not None and index < row["length"]:
                    rows = await conn.fetch(self._chunks_sql, run_id, name, index, _READ_BATCH)
            length, closed = row["length"], row["closed"]
            if length is None:
                if not follow or RunStatus(row["status"]) in TERMINAL_RUN_STATUSES:
                    raise StreamNotFoundError(f"run {run_id!r} has no stream {name!r}")
            elif rows:
                for chunk in rows:
                    yield StreamChunk(index=chunk["idx"], data=chunk["data"])
                    index = chunk["idx"] + 1
                continue  # look again before waiting: more may be there
            elif closed or not follow:
                return
            await wait_for_event(woken, _POLL, self._clock)

    async def list(self, run_id: str) -> list[StreamInfo]:
        """The run's streams, in creation order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._list_sql, run_id)
        if not rows:
            raise RunNotFoundError(f"no run {run_id!r} in this world")
        return [
            StreamInfo(run_id=run_id, name=r["name"], length=r["length"], closed=r["closed"])
            for r in rows[1:]
        ]
