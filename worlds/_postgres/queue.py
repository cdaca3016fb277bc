"""The queue on PostgreSQL: ``FOR UPDATE SKIP LOCKED`` leases, fenced acks, one table.

``available_at`` is a message's due time while it waits, and its lease's expiry while it is
leased (the memory queue's trick): an expired lease is simply due again, so no sweeper is
needed, and a lease takes due rows with ``SKIP LOCKED`` so concurrent consumers in any
number of processes never block each other or get the same message. ``ack`` / ``nack`` /
``extend`` are guarded on the lease id *and* on the lease not having expired, so a consumer
that lost its lease gets :class:`~worldflow.LeaseLostError`. All times are the database's
clock (``clock_timestamp()``), the one clock every engine shares.

Leasing clears the message's idempotency key (once delivered, the key is free again), and
acked messages are deleted, so the table holds only what waits or is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any, Final

from worldflow.errors import InvalidEventError, LeaseLostError
from worldflow.worlds._clock import Clock
from worldflow.worlds._ids import new_id
from worldflow.worlds._postgres import codec
from worldflow.worlds._postgres.notify import Signals
from worldflow.worlds._records import Lease, QueueMessage
from worldflow.worlds._wakeups import wait_for_event

__all__ = ["PostgresQueue"]

_POLL: Final = 1.0  # a lost NOTIFY costs at most this long


class PostgresQueue:
    """Queue operations of one world instance.

    Args:
        pool: The world's pool.
        schema: The checked schema name.
        channel: The ``<schema>_queue`` channel.
        signals: The world's signals (keyed ``q:<queue>``), fired by the listener.
        clock: For the bounded waits.
        wanted: Whether another process may listen now: alone, an enqueue sends no NOTIFY
            (the listener's catch-up tells a newcomer what it missed).
    """

    def __init__(
        self,
        pool: Any,
        schema: str,
        channel: str,
        signals: Signals,
        clock: Clock,
        wanted: Callable[[], bool],
    ) -> None:
        self._pool = pool
        self._signals = signals
        self._clock = clock
        self._channel = channel
        self._wanted = wanted
        s = schema
        self._enqueue_sql = f"""
            WITH m AS (
                INSERT INTO {s}.queue (message_id, queue, run_id, message, available_at,
                                       idempotency_key, workflow_name, engine_id)
                VALUES ($1, $2, $3, $4, clock_timestamp() + $5 * interval '1 second', $6, $7,
                        $8)
                ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL
                DO UPDATE SET available_at = LEAST({s}.queue.available_at, excluded.available_at)
                RETURNING message_id, available_at <= clock_timestamp() AS due)
            SELECT message_id, due, CASE WHEN due AND $9 THEN pg_notify('{channel}', $2) END
            FROM m"""
        self._notify_sql = "SELECT pg_notify($1, $2)"
        # A consumer that names its workflows (or its engine) gets only the messages of
        # workflows it serves, and no message addressed to another live engine. A lease that
        # takes nothing answers instead when the queue's next message is due (one row with a
        # NULL message id), so an idle consumer's poll is one statement.
        self._lease_sql = f"""
            WITH due AS (
                SELECT message_id FROM {s}.queue q
                WHERE queue = $1 AND available_at <= clock_timestamp()
                  AND (NOT $4 OR (
                    ($5::text[] IS NULL OR q.workflow_name IS NULL
                        OR q.workflow_name = ANY($5::text[]))
                    AND (q.engine_id IS NULL OR q.engine_id = $6::text OR NOT EXISTS (
                        SELECT 1 FROM {s}.engines e WHERE e.engine_id = q.engine_id
                          AND e.expires_at > clock_timestamp()))))
                ORDER BY available_at, pos LIMIT $2 FOR UPDATE SKIP LOCKED),
            got AS (
                UPDATE {s}.queue q SET lease_id = gen_random_uuid()::text,
                    attempt = q.attempt + 1,
                    available_at = clock_timestamp() + $3 * interval '1 second',
                    idempotency_key = NULL
                FROM due WHERE q.message_id = due.message_id
                RETURNING q.message_id, q.pos, q.message, q.attempt, q.available_at, q.lease_id)
            SELECT message_id, pos, message, attempt, available_at, lease_id,
                NULL::float8 AS next_due FROM got
            UNION ALL
            SELECT NULL, NULL, NULL, NULL, NULL, NULL,
                (SELECT EXTRACT(EPOCH FROM min(available_at) - clock_timestamp())::float8
                 FROM {s}.queue WHERE queue = $1)
            WHERE NOT EXISTS (SELECT 1 FROM got)"""
        self._ack_sql = f"""
            DELETE FROM {s}.queue
            WHERE message_id = $1 AND lease_id = $2 AND available_at > clock_timestamp()
            RETURNING 1"""
        self._nack_sql = f"""
            UPDATE {s}.queue SET lease_id = NULL,
                available_at = clock_timestamp() + $3 * interval '1 second'
            WHERE message_id = $1 AND lease_id = $2 AND available_at > clock_timestamp()
            RETURNING 1"""
        self._extend_sql = f"""
            UPDATE {s}.queue SET available_at = clock_timestamp() + $3 * interval '1 second'
            WHERE message_id = $1 AND lease_id = $2 AND available_at > clock_timestamp()
            RETURNING available_at"""

    async def enqueue(
        self, queue: str, message: QueueMessage, idempotency_key: str | None, delay: float
    ) -> str:
        """Add (or merge by key) a message; notify consumers when it is due now (if any
        other process may listen)."""
        if not isinstance(message, QueueMessage):
            raise InvalidEventError(f"enqueue() takes a QueueMessage, not {type(message).__name__}")
        notify = self._wanted()
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                self._enqueue_sql,
                new_id("msg"),
                queue,
                message.run_id,
                codec.encode(message),
                max(0.0, float(delay)),
                idempotency_key,
                message.workflow_name,
                message.engine_id,
                notify,
            )
            if row["due"] and not notify and self._wanted():
                # Decided alone, and a newcomer's hello was heard meanwhile: tell it now.
                await conn.execute(self._notify_sql, self._channel, queue)
        message_id: str = row["message_id"]
        if delay <= 0:
            self._signals.fire(f"q:{queue}")
        return message_id

    async def lease(
        self,
        queue: str,
        lease_for: float,
        max_messages: int,
        wait: float,
        *,
        workflows: Collection[str] | None = None,
        engine_id: str | None = None,
    ) -> list[Lease]:
        """Take due messages, waiting up to ``wait`` seconds for one (on NOTIFY or a poll)."""
        if max_messages < 1:
            raise InvalidEventError(f"`max_messages` must be at least 1, got {max_messages}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait)
        key = f"q:{queue}"
        filtered = workflows is not None or engine_id is not None
        served = None if workflows is None else list(workflows)
        while True:
            woken = self._signals.waiter(key)
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    self._lease_sql,
                    queue,
                    max_messages,
                    float(lease_for),
                    filtered,
                    served,
                    engine_id,
                )
            next_due = None
            if len(rows) == 1 and rows[0]["message_id"] is None:  # nothing due for us
                next_due, rows = rows[0]["next_due"], []
            remaining = deadline - loop.time()
            if rows or remaining <= 0:
                rows = sorted(rows, key=lambda r: r["pos"])
                return [
                    Lease(
                        lease_id=r["lease_id"],
                        message_id=r["message_id"],
                        queue=queue,
                        message=codec.decode_message(r["message"]),
                        attempt=r["attempt"],
                        expires_at=r["available_at"],
                    )
                    for r in rows
                ]
            pause = min(remaining, _POLL)
            if next_due is not None:
                pause = min(pause, max(next_due, 0.001))
            await wait_for_event(woken, pause, self._clock)

    async def _guarded(self, sql: str, lease: Lease, seconds: float) -> Any:
        async with self._pool.acquire() as conn:
            if sql is self._ack_sql:
                row = await conn.fetchval(sql, lease.message_id, lease.lease_id)
            else:
                row = await conn.fetchval(sql, lease.message_id, lease.lease_id, seconds)
        if row is None:
            raise LeaseLostError(
                f"lease {lease.lease_id!r} of message {lease.message_id!r} expired or was "
                "taken over: the message will be (or was) delivered again"
            )
        return row

    async def ack(self, lease: Lease) -> None:
        """Remove the message, if the lease still holds it."""
        await self._guarded(self._ack_sql, lease, 0.0)

    async def nack(self, lease: Lease, delay: float) -> None:
        """Give the message back, due after ``delay`` seconds."""
        await self._guarded(self._nack_sql, lease, max(0.0, float(delay)))
        if delay <= 0:
            self._signals.fire(f"q:{lease.queue}")

    async def extend(self, lease: Lease, lease_for: float) -> Lease:
        """Push the lease's expiry to ``lease_for`` seconds from now."""
        expires = await self._guarded(self._extend_sql, lease, float(lease_for))
        return Lease(
            lease_id=lease.lease_id,
            message_id=lease.message_id,
            queue=lease.queue,
            message=lease.message,
            attempt=lease.attempt,
            expires_at=expires,
        )
