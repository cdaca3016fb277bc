"""Flow-control permits on PostgreSQL (the ``FlowControl`` role).

One row of ``permits`` per holder of a key, granted or in line. An ask runs in one
transaction under a transaction-scoped advisory lock on the key, so asks for one key from any
number of processes are serialized while other keys go on; it first deletes the rows that no
longer count (rate grants past their period; permits and waiters of engines that are not
live or of runs that ended; waiters that stopped asking), all judged on the **database's**
clock, the one every engine's liveness is judged on.
"""

from __future__ import annotations

from typing import Any, Final

from worldflow.errors import RunNotFoundError, RunTerminalError
from worldflow.worlds._records import Permit, PermitGrant

__all__ = ["PostgresPermits"]

_TERMINAL: Final = "('completed', 'failed', 'cancelled')"
_COLUMNS: Final = "key, holder, run_id, engine_id, granted, priority, since, asked_at, expires_at"


def _permit(row: Any) -> Permit:
    return Permit(
        key=row["key"],
        holder=row["holder"],
        run_id=row["run_id"],
        engine_id=row["engine_id"],
        granted=row["granted"],
        priority=row["priority"],
        since=row["since"],
        asked_at=row["asked_at"],
        expires_at=row["expires_at"],
    )


class PostgresPermits:
    """Permit operations of one world instance.

    Args:
        pool: The world's pool.
        schema: The checked schema name.
        wait_ttl: Seconds a waiter keeps its place without asking again.
    """

    def __init__(self, pool: Any, schema: str, wait_ttl: float) -> None:
        self._pool = pool
        s = schema
        self._begin_sql = f"""
            SELECT pg_advisory_xact_lock(hashtextextended($1, 7008)),
                   (SELECT status FROM {s}.runs WHERE run_id = $2) AS status,
                   clock_timestamp() AS now"""
        self._lock_sql = (
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7008)), clock_timestamp() AS now"
        )
        self._prune_sql = f"""
            DELETE FROM {s}.permits p WHERE p.key = $1 AND (
                (p.expires_at IS NOT NULL AND p.expires_at <= $2::timestamptz)
                OR (p.expires_at IS NULL AND (
                    NOT EXISTS (SELECT 1 FROM {s}.engines e
                                WHERE e.engine_id = p.engine_id AND e.expires_at > $2)
                    OR NOT EXISTS (SELECT 1 FROM {s}.runs r
                                   WHERE r.run_id = p.run_id AND r.status NOT IN {_TERMINAL})))
                OR (NOT p.granted
                    AND p.asked_at < $2::timestamptz - {float(wait_ttl)} * interval '1 second'))"""
        self._held_sql = f"""
            UPDATE {s}.permits SET engine_id = $3, asked_at = $4
            WHERE key = $1 AND holder = $2 AND granted RETURNING 1"""
        self._line_sql = f"""
            INSERT INTO {s}.permits AS p ({_COLUMNS})
            VALUES ($1, $2, $3, $4, false, $5, $6, $6, NULL)
            ON CONFLICT (key, holder) DO UPDATE SET run_id = excluded.run_id,
                engine_id = excluded.engine_id, priority = excluded.priority,
                asked_at = excluded.asked_at
            RETURNING since"""
        self._counts_sql = f"""
            SELECT count(*) FILTER (WHERE granted) AS held,
                   count(*) FILTER (WHERE NOT granted AND (-priority, since, holder COLLATE "C")
                                    < (-$2::integer, $3::timestamptz, $4::text COLLATE "C"))
                       AS ahead,
                   min(expires_at) FILTER (WHERE granted) AS first_expiry
            FROM {s}.permits WHERE key = $1"""
        self._grant_sql = f"""
            UPDATE {s}.permits SET granted = true, since = $3::timestamptz,
                expires_at = $3::timestamptz + $4::float8 * interval '1 second'
            WHERE key = $1 AND holder = $2"""
        self._count_sql = f"SELECT count(*) FROM {s}.permits WHERE key = $1 AND granted"
        self._release_sql = f"""
            DELETE FROM {s}.permits
            WHERE key = $1 AND holder = $2 AND (NOT granted OR expires_at IS NULL)
            RETURNING 1"""
        self._list_sql = f"""
            SELECT {_COLUMNS} FROM {s}.permits WHERE key = $1
            ORDER BY granted DESC, CASE WHEN granted THEN 0 ELSE -priority END,
                     since, holder COLLATE "C" """

    async def acquire(
        self,
        key: str,
        holder: str,
        *,
        run_id: str,
        engine_id: str,
        limit: int,
        period: float | None,
        priority: int,
    ) -> PermitGrant:
        """Grant or queue; see ``FlowControl`` (the caller checked the arguments)."""
        async with self._pool.acquire() as conn, conn.transaction():
            begin = await conn.fetchrow(self._begin_sql, key, run_id)
            status, now = begin["status"], begin["now"]
            if status is None:
                raise RunNotFoundError(f"no run {run_id!r} in this world")
            if status in ("completed", "failed", "cancelled"):
                raise RunTerminalError(f"run {run_id!r} has ended: it needs no permit")
            await conn.execute(self._prune_sql, key, now)
            if await conn.fetchval(self._held_sql, key, holder, engine_id, now) is not None:
                held = await conn.fetchval(self._count_sql, key)
                return PermitGrant(granted=True, held=held)
            since = await conn.fetchval(
                self._line_sql, key, holder, run_id, engine_id, priority, now
            )
            counts = await conn.fetchrow(self._counts_sql, key, priority, since, holder)
            held, ahead = counts["held"], counts["ahead"]
            if ahead < limit - held:
                await conn.execute(self._grant_sql, key, holder, now, period)
                return PermitGrant(granted=True, held=held + 1)
            retry_after = None
            first = counts["first_expiry"]
            if period is not None and first is not None:
                retry_after = max(0.0, (first - now).total_seconds())
            return PermitGrant(granted=False, held=held, ahead=ahead, retry_after=retry_after)

    async def release(self, key: str, holder: str) -> bool:
        """Drop a concurrency permit or a place in line; see ``FlowControl``."""
        async with self._pool.acquire() as conn:
            return await conn.fetchval(self._release_sql, key, holder) is not None

    async def list(self, key: str) -> list[Permit]:
        """Granted permits in grant order, then the line in order."""
        async with self._pool.acquire() as conn, conn.transaction():
            now = (await conn.fetchrow(self._lock_sql, key))["now"]
            await conn.execute(self._prune_sql, key, now)
            return [_permit(row) for row in await conn.fetch(self._list_sql, key)]
