"""Engines, run owners and the catalog on PostgreSQL (the ``Ownership`` and ``Catalog`` roles).

An engine is a row of ``engines`` with a heartbeat deadline (``expires_at``) on the
**database's** clock, the one clock every machine shares; it is live while that deadline is
ahead. A run's owner is two columns of ``runs`` (``owner_id``, ``owner_epoch``), kept out of
the stored view so that a claim is a plain ``UPDATE``. Fencing itself happens in the append
statement (``appender``): its compare-and-set also requires the owner the rules saw, and a
claim requires the claiming engine to be live in the same statement.

:meth:`PostgresOwners.claim_orphans` picks orphans with ``FOR UPDATE SKIP LOCKED``, so
concurrent sweepers in any number of processes never take the same run and never wait on
each other; a dead engine's rows stay until it is swept (its heartbeat then fails).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from typing import Any, Final

from worldflow.errors import InvalidEventError, OwnershipLostError, WorkflowNotRegisteredError
from worldflow.worlds._ids import new_id
from worldflow.worlds._postgres import codec
from worldflow.worlds._records import EngineInfo, WorkflowInfo, WorkflowRun

__all__ = ["PostgresOwners"]

_ENGINE_COLUMNS: Final = "engine_id, workflows, ttl, registered_at, heartbeat_at, expires_at"


def _engine(row: Any) -> EngineInfo:
    return EngineInfo(
        engine_id=row["engine_id"],
        workflows=tuple(row["workflows"]),
        ttl=row["ttl"],
        registered_at=row["registered_at"],
        heartbeat_at=row["heartbeat_at"],
        expires_at=row["expires_at"],
    )


class PostgresOwners:
    """Ownership and catalog operations of one world instance.

    Args:
        pool: The world's pool.
        schema: The checked schema name.
    """

    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        s = schema
        live = "expires_at > clock_timestamp()"
        self._register_sql = f"""
            INSERT INTO {s}.engines (engine_id, workflows, ttl, registered_at, heartbeat_at,
                                     expires_at, host, pid)
            SELECT $1, $2::text[], $3, t, t, t + $3 * interval '1 second', $4, $5
            FROM clock_timestamp() AS t
            RETURNING {_ENGINE_COLUMNS}"""
        self._heartbeat_sql = f"""
            UPDATE {s}.engines SET heartbeat_at = t, expires_at = t + ttl * interval '1 second'
            FROM clock_timestamp() AS t
            WHERE engine_id = $1 AND expires_at > t
            RETURNING {_ENGINE_COLUMNS}"""
        self._forget_sql = f"DELETE FROM {s}.engines WHERE engine_id = $1"
        self._deregister_sql = f"""
            WITH gone AS (DELETE FROM {s}.engines WHERE engine_id = $1),
            released AS (
                UPDATE {s}.runs SET owner_id = NULL
                WHERE owner_id = $1 AND status NOT IN ('completed', 'failed', 'cancelled')
                RETURNING 1)
            SELECT count(*) FROM released"""
        self._list_sql = f"""
            SELECT {_ENGINE_COLUMNS} FROM {s}.engines WHERE {live}
            ORDER BY registered_at, pos"""
        self._claim_sql = f"""
            WITH me AS (SELECT 1 FROM {s}.engines WHERE engine_id = $1 AND {live}),
            pick AS (
                SELECT r.run_id FROM {s}.runs r
                WHERE r.status IN ('pending', 'running') AND r.workflow_name = ANY($2::text[])
                  AND (r.owner_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {s}.engines e
                        WHERE e.engine_id = r.owner_id AND e.expires_at > clock_timestamp()))
                  AND EXISTS (SELECT 1 FROM me)
                ORDER BY r.pos LIMIT $3
                FOR UPDATE OF r SKIP LOCKED),
            claimed AS (
                UPDATE {s}.runs r SET owner_id = $1, owner_epoch = r.owner_epoch + 1
                FROM pick WHERE r.run_id = pick.run_id
                RETURNING r.pos, r.view, r.input, r.owner_id, r.owner_epoch)
            SELECT EXISTS (SELECT 1 FROM me) AS live, c.* FROM (SELECT 1) AS one
            LEFT JOIN claimed c ON true ORDER BY c.pos"""
        self._release_sql = f"""
            WITH released AS (
                UPDATE {s}.runs SET owner_id = NULL
                WHERE owner_id = $1 AND run_id = ANY($2::text[]) RETURNING 1)
            SELECT count(*) FROM released"""
        self._publish_sql = f"""
            INSERT INTO {s}.workflows (name, entry)
            SELECT * FROM unnest($1::text[], $2::bytea[])
            ON CONFLICT (name) DO UPDATE SET entry = excluded.entry"""
        entries = f"""
            SELECT w.entry, coalesce(
                array_agg(e.engine_id ORDER BY e.registered_at, e.pos)
                    FILTER (WHERE e.engine_id IS NOT NULL), '{{}}') AS engines
            FROM {s}.workflows w
            LEFT JOIN {s}.engines e ON w.name = ANY(e.workflows) AND e.{live}"""
        self._entries_sql = f"{entries} GROUP BY w.name, w.entry ORDER BY w.name"
        self._entry_sql = f"{entries} WHERE w.name = $1 GROUP BY w.name, w.entry"

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._pool.acquire() as conn:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

    # -- engines -----------------------------------------------------------------------------

    async def register(self, workflows: Collection[str], ttl: float) -> EngineInfo:
        """A new engine row, live for ``ttl`` seconds of the database's clock."""
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise InvalidEventError(f"register_engine: `ttl` must be > 0 seconds, got {ttl!r}")
        if isinstance(workflows, str) or not all(isinstance(w, str) for w in workflows):
            raise InvalidEventError("register_engine: `workflows` is a collection of names")
        [row] = await self._fetch(
            self._register_sql,
            new_id("eng"),
            sorted(set(workflows)),
            float(ttl),
            socket.gethostname(),
            os.getpid(),
        )
        return _engine(row)

    async def heartbeat(self, engine_id: str) -> EngineInfo:
        """Push the engine's deadline ``ttl`` seconds ahead; a dead engine is refused."""
        rows = await self._fetch(self._heartbeat_sql, engine_id)
        if not rows:
            await self._fetch(self._forget_sql, engine_id)  # it stays dead
            raise OwnershipLostError(
                f"engine {engine_id!r} is not live (its ttl passed without a heartbeat, or it "
                "deregistered): its runs may have other owners; register again"
            )
        return _engine(rows[0])

    async def deregister(self, engine_id: str) -> int:
        """Forget the engine and release its unfinished runs; returns how many."""
        [row] = await self._fetch(self._deregister_sql, engine_id)
        return int(row[0])

    async def live(self) -> list[EngineInfo]:
        """The live engines, oldest registration first."""
        return [_engine(row) for row in await self._fetch(self._list_sql)]

    async def claim_orphans(
        self, engine_id: str, workflows: Collection[str], limit: int
    ) -> list[WorkflowRun]:
        """Take up to ``limit`` orphaned pending/running runs of ``workflows``, oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidEventError(f"claim_orphans: `limit` must be at least 1, got {limit!r}")
        rows = await self._fetch(self._claim_sql, engine_id, list(workflows), limit)
        if not rows[0]["live"]:
            raise OwnershipLostError(
                f"engine {engine_id!r} is not live; register again before claiming runs"
            )
        return [codec.decode_run(row) for row in rows if row["pos"] is not None]

    async def release(self, engine_id: str, run_ids: Collection[str]) -> int:
        """Release those of ``run_ids`` that ``engine_id`` owns."""
        [row] = await self._fetch(self._release_sql, engine_id, list(run_ids))
        return int(row[0])

    # -- catalog -----------------------------------------------------------------------------

    async def publish(self, workflows: Sequence[WorkflowInfo]) -> None:
        """Store entries; the last publish of a name wins."""
        latest: dict[str, bytes] = {}
        for entry in workflows:
            if not isinstance(entry, WorkflowInfo):
                raise InvalidEventError(
                    f"publish_workflows takes WorkflowInfo entries, not {type(entry).__name__}"
                )
            latest[entry.name] = codec.encode(_without_engines(entry))
        if latest:
            await self._fetch(self._publish_sql, list(latest), list(latest.values()))

    async def entries(self) -> list[WorkflowInfo]:
        """Every entry by name, with the live engines serving it."""
        return [_entry(row) for row in await self._fetch(self._entries_sql)]

    async def entry(self, name: str) -> WorkflowInfo:
        """One entry; never published → ``WorkflowNotRegisteredError``."""
        rows = await self._fetch(self._entry_sql, name)
        if not rows:
            raise WorkflowNotRegisteredError(f"no workflow {name!r} was published to this world")
        return _entry(rows[0])


def _without_engines(entry: WorkflowInfo) -> WorkflowInfo:
    import msgspec

    return msgspec.structs.replace(entry, engines=())


def _entry(row: Any) -> WorkflowInfo:
    import msgspec

    return msgspec.structs.replace(codec.decode_entry(row["entry"]), engines=tuple(row["engines"]))
