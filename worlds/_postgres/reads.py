"""Reads of the PostgreSQL world: runs, events, steps, hooks, waits, and purge.

Every read is one statement on an index. Listings are ordered by an identity column
``pos``. Positions are handed out at INSERT time but transactions commit in another order,
so a run with a lower ``pos`` can become visible after a reader has paged past it; ascending
world-wide cursors therefore carry the page's snapshot as well as the last ``pos``, and the
next page also takes the rows that snapshot could not see (``pg_visible_in_snapshot``), so
late commits show up exactly once. Descending pages need no snapshot: what commits late
above the cursor is newer than the listing. Per-run listings (events, steps) are written in
run order under the run's compare-and-set, so a plain position is enough there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from worldflow.errors import (
    HookNotFoundError,
    InvalidEventError,
    RunNotFoundError,
    RunNotTerminalError,
    StepNotFoundError,
)
from worldflow.worlds._events import AnyEvent, decode_event
from worldflow.worlds._postgres import codec
from worldflow.worlds._read_args import bad_cursor, check_limit, run_statuses
from worldflow.worlds._records import (
    Hook,
    HookStatus,
    Page,
    RunStatus,
    Step,
    Wait,
    WaitStatus,
    WorkflowRun,
)

__all__ = ["PostgresReads"]

T = TypeVar("T")

_TERMINAL: Final = ("completed", "failed", "cancelled")


def _parse_cursor(cursor: str | None) -> tuple[int | None, str | None]:
    """``(last pos, snapshot)`` from ``"pos"`` or ``"pos~snapshot"``."""
    if cursor is None:
        return None, None
    head, _, snapshot = cursor.partition("~")
    try:
        last = int(head)
    except ValueError:
        raise bad_cursor(cursor) from None
    if snapshot and not all(c.isdigit() or c in ":," for c in snapshot):
        raise bad_cursor(cursor)
    return last, snapshot or None


class _Query:
    """A WHERE clause and its arguments, built up filter by filter."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.args: list[Any] = []

    def add(self, clause: str, *values: Any) -> None:
        refs = []
        for value in values:
            self.args.append(value)
            refs.append(f"${len(self.args)}")
        self.where.append(clause.format(*refs))

    def sql(self) -> str:
        return " AND ".join(self.where) if self.where else "true"


class PostgresReads:
    """The read side of one world instance.

    Args:
        pool: The world's pool.
        schema: The checked schema name.
    """

    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        self._s = s = schema
        self._get_run_sql = f"SELECT {codec.RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1"
        self._exists_sql = f"SELECT 1 FROM {s}.runs WHERE run_id = $1"
        self._events_sql = f"""
            SELECT body FROM {s}.events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"""
        self._step_sql = f"SELECT view FROM {s}.steps WHERE run_id = $1 AND step_id = $2"
        self._token_sql = f"SELECT view FROM {s}.hooks WHERE token = $1 AND status = 'active'"
        self._lock_sql = f"SELECT status FROM {s}.runs WHERE run_id = $1 FOR UPDATE"
        self._purge_sql = f"""
            WITH r AS (DELETE FROM {s}.runs WHERE run_id = $1 RETURNING run_id),
            e AS (DELETE FROM {s}.events WHERE run_id = $1),
            st AS (DELETE FROM {s}.steps WHERE run_id = $1),
            h AS (DELETE FROM {s}.hooks WHERE run_id = $1),
            w AS (DELETE FROM {s}.waits WHERE run_id = $1),
            q AS (DELETE FROM {s}.queue WHERE run_id = $1),
            sm AS (DELETE FROM {s}.streams WHERE run_id = $1),
            c AS (DELETE FROM {s}.stream_chunks WHERE run_id = $1)
            SELECT nextval('{s}.changes')"""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._pool.acquire() as conn:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def _require_run(self, run_id: str) -> None:
        if await self._fetchrow(self._exists_sql, run_id) is None:
            raise RunNotFoundError(f"no run {run_id!r} in this world")

    async def get_run(self, run_id: str) -> WorkflowRun:
        """The run's view."""
        row = await self._fetchrow(self._get_run_sql, run_id)
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r} in this world")
        return codec.decode_run(row)

    async def list_events(self, run_id: str, after_seq: int, limit: int | None) -> Page[AnyEvent]:
        """Events with ``seq > after_seq``; the cursor is the last ``seq`` returned."""
        if limit is not None:
            check_limit(limit)
        rows = await self._fetch(
            self._events_sql, run_id, max(0, after_seq), None if limit is None else limit + 1
        )
        if not rows:
            await self._require_run(run_id)
        events = [decode_event(r["body"]) for r in rows]
        if limit is not None and len(events) > limit:
            events = events[:limit]
            return Page(items=events, cursor=str(events[-1].seq), has_more=True)
        return Page(items=events)

    async def get_step(self, run_id: str, step_id: str) -> Step:
        """One step."""
        row = await self._fetchrow(self._step_sql, run_id, step_id)
        if row is None:
            await self._require_run(run_id)
            raise StepNotFoundError(f"run {run_id!r} has no step {step_id!r}")
        return codec.decode_step(row["view"])

    async def list_steps(self, run_id: str, limit: int, cursor: str | None) -> Page[Step]:
        """A run's steps in creation order."""
        query = _Query()
        query.add("run_id = {}", run_id)
        page = await self._page("steps", query, "asc", limit, cursor, codec.decode_step, False)
        if not page.items and cursor is None:
            await self._require_run(run_id)
        return page

    async def get_hook_by_token(self, token: str) -> Hook:
        """The live hook holding ``token``."""
        row = await self._fetchrow(self._token_sql, token)
        if row is None:
            raise HookNotFoundError(f"no live hook has the token {token!r}")
        return codec.decode_hook(row["view"])

    async def list_hooks(
        self, run_id: str | None, status: HookStatus | None, limit: int, cursor: str | None
    ) -> Page[Hook]:
        """Hooks of one run or of the world, in creation order."""
        query = _Query()
        if run_id is not None:
            await self._require_run(run_id)
            query.add("run_id = {}", run_id)
        if status is not None:
            query.add("status = {}", HookStatus(status).value)
        return await self._page(
            "hooks", query, "asc", limit, cursor, codec.decode_hook, run_id is None
        )

    async def list_waits(
        self, run_id: str | None, status: WaitStatus | None, limit: int, cursor: str | None
    ) -> Page[Wait]:
        """Waits of one run or of the world, in creation order."""
        query = _Query()
        if run_id is not None:
            await self._require_run(run_id)
            query.add("run_id = {}", run_id)
        if status is not None:
            query.add("status = {}", WaitStatus(status).value)
        return await self._page(
            "waits", query, "asc", limit, cursor, codec.decode_wait, run_id is None
        )

    async def list_runs(
        self,
        *,
        workflow_name: str | None,
        status: RunStatus | Collection[RunStatus] | None,
        resource_id: str | None,
        metadata: dict[str, str] | None,
        created_after: datetime | None,
        created_before: datetime | None,
        order: str,
        limit: int,
        cursor: str | None,
        forked_from: str | None = None,
    ) -> Page[WorkflowRun]:
        """Runs matching every filter, with cursors that are stable under concurrent creation."""
        if order not in ("asc", "desc"):
            raise InvalidEventError(f"`order` must be 'asc' or 'desc', got {order!r}")
        query = _Query()
        if workflow_name is not None:
            query.add("workflow_name = {}", workflow_name)
        statuses = run_statuses(status)
        if statuses is not None:
            query.add("status = ANY({}::text[])", sorted(s.value for s in statuses))
        if resource_id is not None:
            query.add("resource_id = {}", resource_id)
        if forked_from is not None:
            query.add("forked_from = {}", forked_from)
        if metadata:
            query.add("metadata @> {}::jsonb", codec.encode(dict(metadata)).decode())
        if created_after is not None:
            query.add("created_at >= {}", created_after)
        if created_before is not None:
            query.add("created_at < {}", created_before)
        return await self._page("runs", query, order, limit, cursor, None, order == "asc")

    async def _page(
        self,
        table: str,
        query: _Query,
        order: str,
        limit: int,
        cursor: str | None,
        decode: Callable[[bytes], T] | None,
        snapshot: bool,
    ) -> Page[Any]:
        """One page of ``table`` by ``pos``; with ``snapshot``, late commits are not skipped."""
        check_limit(limit)
        last, snap = _parse_cursor(cursor)
        if last is not None:
            if order == "desc":
                query.add("pos < {}", last)
            elif snap is not None and snapshot:
                query.add(
                    "(pos > {0} OR (created_xid >= pg_snapshot_xmin({1}::text::pg_snapshot) "
                    "AND NOT pg_visible_in_snapshot(created_xid, {1}::text::pg_snapshot)))",
                    last,
                    snap,
                )
            else:
                query.add("pos > {}", last)
        columns = f"pos, {codec.RUN_COLUMNS}" if table == "runs" else "pos, view"
        direction = "DESC" if order == "desc" else "ASC"
        query.args.append(limit + 1)
        sql = (
            f"SELECT {columns}, pg_current_snapshot()::text AS snap FROM {self._s}.{table} "
            f"WHERE {query.sql()} ORDER BY pos {direction} LIMIT ${len(query.args)}"
        )
        rows = await self._fetch(sql, *query.args)
        more = len(rows) > limit
        rows = rows[:limit]
        if decode is None:
            items: Sequence[Any] = [codec.decode_run(r) for r in rows]
        else:
            items = [decode(r["view"]) for r in rows]
        if not more:
            return Page(items=list(items))
        top = rows[-1]["pos"] if order == "desc" else max(r["pos"] for r in rows)
        if order == "asc" and last is not None:
            top = max(top, last)
        next_cursor = f"{top}~{rows[0]['snap']}" if snapshot else str(top)
        return Page(items=list(items), cursor=next_cursor, has_more=True)

    async def purge(self, run_id: str) -> None:
        """Delete a terminal run and everything of it.

        The run row is locked first (``FOR UPDATE``, which waits for appends and stream
        writes in flight, and holds off later ones: they need that row), and only then is
        everything deleted, by a statement whose snapshot sees all that those wrote.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval(self._lock_sql, run_id)
            if status is None:
                raise RunNotFoundError(f"no run {run_id!r} in this world")
            if status not in _TERMINAL:
                raise RunNotTerminalError(
                    f"run {run_id!r} is {status}: only a completed, failed or cancelled run "
                    "can be purged (cancel it first)"
                )
            await conn.execute(self._purge_sql, run_id)
