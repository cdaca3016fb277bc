"""Housekeeping that keeps the PostgreSQL world's hot tables small.

The queue table churns (every message is inserted, leased, updated and deleted), and a server
with ``autovacuum`` off, or one that falls behind, lets its dead rows pile up until every
lease scans them. Every world instance runs :meth:`Maintenance.run_once` on a jittered timer;
a session advisory lock (tried, never waited for) makes one instance at a time do the work:
``VACUUM (ANALYZE)`` of ``queue`` and ``engines``, and removal of engine rows dead for more than
an hour (dead or gone answer alike; the hour leaves them visible to someone looking).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, Final

__all__ = ["Maintenance"]

log = logging.getLogger("worldflow.worlds.postgres")

_LOCK_SPACE: Final = 7008  # migrations use 7007


class Maintenance:
    """The housekeeping of one world instance.

    Args:
        pool: The world's pool.
        schema: The checked schema name.
        every: Seconds between runs (with ±20 % jitter); 0 turns the timer off.
    """

    def __init__(self, pool: Any, schema: str, every: float) -> None:
        self._pool = pool
        self._schema = schema
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def start(self) -> None:
        """Start the timer (unless ``every`` is 0)."""
        if self._every > 0:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every * random.uniform(0.8, 1.2))
            try:
                await self.run_once()
            except Exception as exc:  # housekeeping must never take the world down
                log.warning("postgres world maintenance failed: %r", exc)

    async def run_once(self) -> bool:
        """Do the housekeeping now, unless another instance is doing it; return whether it ran."""
        s = self._schema
        key = f"worldflow-maintenance:{s}"
        async with self._pool.acquire() as conn:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, $2))", key, _LOCK_SPACE
            )
            if not got:
                return False
            try:
                await conn.execute(
                    f"DELETE FROM {s}.engines "
                    "WHERE expires_at < clock_timestamp() - interval '1 hour'"
                )
                await conn.execute(f"VACUUM (ANALYZE) {s}.queue, {s}.engines")
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, $2))", key, _LOCK_SPACE
                )
        self.runs += 1
        return True

    async def aclose(self) -> None:
        """Stop the timer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
