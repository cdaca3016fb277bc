"""The PostgreSQL world: many engine processes on many machines sharing one database.

``open_world("postgresql://user@host:5432/db?schema=worldflow")`` connects a pool of asyncpg
connections (``pool``), creates or upgrades the schema (under an advisory lock, so engines
may start together), and opens one dedicated LISTEN connection. The write path is in
:mod:`~worldflow.worlds._postgres.appender`, the reads in ``reads``, the queue in ``queue``,
streams in ``streams`` and the wake-ups in ``notify``.

URL options (everything else in the query string goes to asyncpg / libpq as usual):

* ``schema``: the schema holding the tables (default ``worldflow``);
* ``pool_min`` / ``pool_max``: pool bounds (default 2 / 10; on two cores more was slower);
* ``maintain_every``: seconds between housekeeping runs (default 60; 0 for never).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any, Final, Self

import asyncpg

from worldflow.errors import InvalidEventError, RunNotFoundError, WorldError
from worldflow.worlds._clock import Clock, SystemClock
from worldflow.worlds._events import AnyEvent, Event
from worldflow.worlds._permits import check_permit_arguments, check_permit_key
from worldflow.worlds._postgres.appender import Appender, AppendStats, FaultHook
from worldflow.worlds._postgres.maintenance import Maintenance
from worldflow.worlds._postgres.notify import Listener, Notifier, Signals
from worldflow.worlds._postgres.owners import PostgresOwners
from worldflow.worlds._postgres.permits import PostgresPermits
from worldflow.worlds._postgres.pool import Pool
from worldflow.worlds._postgres.queue import PostgresQueue
from worldflow.worlds._postgres.reads import PostgresReads
from worldflow.worlds._postgres.schema import check_schema_name, migrate
from worldflow.worlds._postgres.streams import PostgresStreams
from worldflow.worlds._postgres.url import application_name, parse_url
from worldflow.worlds._protocol import PERMIT_WAIT_TTL, EventResult, SortOrder
from worldflow.worlds._records import (
    EngineInfo,
    Fence,
    Hook,
    HookStatus,
    Lease,
    Page,
    Permit,
    PermitGrant,
    QueueMessage,
    RunStatus,
    Step,
    StreamChunk,
    StreamInfo,
    Wait,
    WaitStatus,
    WorkflowInfo,
    WorkflowRun,
)
from worldflow.worlds._wakeups import wait_for_event

__all__ = ["PostgresWorld"]

_POLL: Final = 1.0  # every wait re-reads at least this often: a lost NOTIFY never hangs it
_WORLD_KEY: Final = "w"


class PostgresWorld:
    """A world in a PostgreSQL database, shared safely by any number of processes.

    Open it with :meth:`open` or :meth:`from_url` (what ``open_world`` calls), and close it
    with :meth:`aclose` (or ``async with``).

    Example:
        >>> url = "postgresql://postgres@127.0.0.1/app"
        >>> world = await PostgresWorld.from_url(url)  # doctest: +SKIP
    """

    def __init__(self, dsn: str, schema: str, pool: Pool, clock: Clock) -> None:
        self._dsn = dsn
        self._schema = schema
        self._pool = pool
        self._clock = clock
        self._closed = False
        self._signals = Signals()
        self._log_channel = f"{schema}_log"
        self._queue_channel = f"{schema}_queue"
        self._notifier = Notifier(pool, self._log_channel, self._peers)
        self._appender = Appender(
            pool, schema, clock, self._committed, self._log_channel, self._notifier
        )
        self._appender.on_news = self._news
        self._appender.on_end = self._ended
        self._reads = PostgresReads(pool, schema)
        self._owners = PostgresOwners(pool, schema)
        self._permits = PostgresPermits(pool, schema, PERMIT_WAIT_TTL)
        self._maintenance = Maintenance(pool, schema, 0)
        self._queues = PostgresQueue(
            pool, schema, self._queue_channel, self._signals, clock, self._peers
        )
        self._streams = PostgresStreams(
            pool, schema, self._signals, clock, self._stream_changed, self._check_open
        )
        self._listener = Listener(
            self._connect,
            [self._log_channel, self._queue_channel],
            self._notified,
            self._resynced,
            application_name(schema),
            pool.server_pids,
        )
        self._changes_sql = (
            f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {schema}.changes"
        )
        self._last_seq_sql = f"SELECT last_seq FROM {schema}.runs WHERE run_id = $1"
        self._end_sql = f"SELECT last_seq, status FROM {schema}.runs WHERE run_id = $1"

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "worldflow",
        pool_min: int = 2,
        pool_max: int = 10,
        maintain_every: float = 60.0,
        clock: Clock | None = None,
    ) -> Self:
        """Connect, create or upgrade the schema, and start listening.

        Args:
            dsn: A libpq connection string or ``postgresql://`` URL (without worldflow's own
                options).
            schema: Where the tables live.
            pool_min: Connections kept open.
            pool_max: At most this many pooled connections (plus one listener).
            maintain_every: Seconds between housekeeping runs (vacuum of the queue table;
                one instance at a time does it); 0 for never.
            clock: Where view timestamps come from (queue and lease times are the database's).
        """
        check_schema_name(schema)
        # No world transaction is ever left open; a stuck one would hold the vacuum horizon
        # (and bloat the queue table), so the server ends it.
        settings = {
            "application_name": application_name(schema),
            "idle_in_transaction_session_timeout": "60000",
        }

        async def connect() -> Any:
            return await asyncpg.connect(dsn, server_settings=settings)

        pool = Pool(connect, pool_min, pool_max)
        try:
            await pool.start()
            async with pool.acquire() as conn:
                await migrate(conn, schema)
            world = cls(dsn, schema, pool, clock or SystemClock())
            world._maintenance = Maintenance(pool, schema, maintain_every)
            await world._listener.start()
            world._maintenance.start()
        except BaseException:
            await pool.close()
            raise
        return world

    @classmethod
    async def from_url(cls, url: str) -> Self:
        """Open the world at ``postgresql://user@host:port/db?schema=...&pool_max=...``."""
        dsn, schema, pool_min, pool_max, every = parse_url(url)
        return await cls.open(
            dsn, schema=schema, pool_min=pool_min, pool_max=pool_max, maintain_every=every
        )

    async def _connect(self) -> Any:
        return await asyncpg.connect(
            self._dsn, server_settings={"application_name": application_name(self._schema)}
        )

    # -- properties for the engine, tests and benchmarks ------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock this world stamps views with."""
        return self._clock

    @property
    def schema(self) -> str:
        """The schema holding this world's tables."""
        return self._schema

    @property
    def append_stats(self) -> AppendStats:
        """Counters of the write path: batches, statements, CAS misses, reloads."""
        return self._appender.stats

    @property
    def queries(self) -> int:
        """Statements this world has sent on its pooled connections (benchmarks count them)."""
        return self._pool.queries

    @property
    def listener(self) -> Listener:
        """The LISTEN connection's supervisor (tests kill its backend)."""
        return self._listener

    def set_fault(self, hook: FaultHook | None) -> None:
        """Install a test hook run before and after each append statement."""
        self._appender.fault = hook

    async def maintain(self) -> bool:
        """Vacuum the queue table now (unless another instance is at it); whether it ran."""
        self._check_open()
        return await self._maintenance.run_once()

    def evict(self, run_id: str | None = None) -> None:
        """Drop the cached overlay of a run (or of all); the next append re-reads it."""
        self._appender.evict(run_id)

    # -- wake-ups --------------------------------------------------------------------------

    def _committed(self, run_id: str, last_seq: int, notified: bool, terminal: bool) -> None:
        signals = self._signals
        signals.fire(f"r:{run_id}")
        signals.fire(_WORLD_KEY)
        if terminal:  # result waiters, and followers of a stream that never came end
            signals.fire(f"t:{run_id}")
            signals.fire(f"s:{run_id}")
        notifier = self._notifier
        if notified or not notifier.wanted():  # told by the statement's NOTIFY, or nobody to tell
            return
        # Coalesced (and an urgent statement decided silent, alone, that ended after a
        # newcomer's hello: told now).
        notifier.add(f"{run_id}:{last_seq}")
        if terminal:
            notifier.add(f"t:{run_id}")
            notifier.add(f"s:{run_id}")

    def _peers(self) -> bool:
        return self._listener.peers

    def _stream_changed(self, run_id: str) -> None:
        self._notifier.add(f"s:{run_id}")

    def _notified(self, channel: str, payload: str) -> None:
        signals = self._signals
        if channel == self._queue_channel:
            signals.fire(f"q:{payload}")
            return
        appender = self._appender
        news = False
        for item in payload.split(","):
            if item.startswith("t:"):  # beside its run's run:seq item, which tells the news
                if appender.heard_end(item[2:]):
                    signals.fire(item)
                continue
            if item.startswith("s:"):
                signals.fire(item)
                news = True
                continue
            run_id, _, seq = item.rpartition(":")
            if appender.heard(run_id, int(seq) if seq.isdigit() else 0):
                signals.fire(f"r:{run_id}")
                news = True
        if news:
            signals.fire(_WORLD_KEY)

    def _news(self, run_id: str) -> None:
        """A notification held while this process wrote the run was another's append."""
        self._signals.fire(f"r:{run_id}")
        self._signals.fire(_WORLD_KEY)

    def _ended(self, run_id: str) -> None:
        """An end heard while this process wrote the run: wake its result waiters now."""
        self._signals.fire(f"t:{run_id}")

    def _resynced(self) -> None:
        # Deaf for a while: notifications may be lost, so no cached last_seq is trusted.
        self._appender.evict()
        self._signals.fire_all()

    def _check_open(self) -> None:
        if self._closed:
            raise WorldError("this PostgresWorld was closed with aclose(); open a new one")

    # -- EventLog --------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        """Append a batch of events atomically; see the rules of ``worldflow.worlds``.

        ``fence`` names the appending engine and the epoch it last saw (``Ownership``).
        """
        self._check_open()
        if type(events) is not list and (
            isinstance(events, Event) or not isinstance(events, Sequence)
        ):
            raise InvalidEventError(
                f"append() takes a sequence of events, not {type(events).__name__}"
            )
        if fence is not None and not isinstance(fence, Fence):
            raise InvalidEventError(f"`fence` must be a Fence, not {type(fence).__name__}")
        return await self._appender.append(run_id, list(events), fence, expected_seq)

    async def list_events(
        self, run_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> Page[AnyEvent]:
        """Events of a run with ``seq > after_seq``; ``cursor`` is the last ``seq`` returned."""
        self._check_open()
        return await self._reads.list_events(run_id, after_seq, limit)

    # -- RunStore --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> WorkflowRun:
        """The run's view."""
        self._check_open()
        return await self._reads.get_run(run_id)

    async def list_runs(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        order: SortOrder = "desc",
        limit: int = 100,
        cursor: str | None = None,
        forked_from: str | None = None,
    ) -> Page[WorkflowRun]:
        """Runs matching every filter; pages never skip or repeat a run."""
        self._check_open()
        return await self._reads.list_runs(
            workflow_name=workflow_name,
            status=status,
            resource_id=resource_id,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            order=order,
            limit=limit,
            cursor=cursor,
            forked_from=forked_from,
        )

    async def get_step(self, run_id: str, step_id: str) -> Step:
        """One step of a run."""
        self._check_open()
        return await self._reads.get_step(run_id, step_id)

    async def list_steps(
        self, run_id: str, *, limit: int = 1000, cursor: str | None = None
    ) -> Page[Step]:
        """A run's steps in creation order."""
        self._check_open()
        return await self._reads.list_steps(run_id, limit, cursor)

    async def get_hook_by_token(self, token: str) -> Hook:
        """The live hook holding ``token``."""
        self._check_open()
        return await self._reads.get_hook_by_token(token)

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Hook]:
        """Hooks of one run or of the world, in creation order."""
        self._check_open()
        return await self._reads.list_hooks(run_id, status, limit, cursor)

    async def list_waits(
        self,
        *,
        run_id: str | None = None,
        status: WaitStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Wait]:
        """Waits of one run or of the world, in creation order."""
        self._check_open()
        return await self._reads.list_waits(run_id, status, limit, cursor)

    async def purge(self, run_id: str) -> None:
        """Delete a terminal run and everything of it (one statement)."""
        self._check_open()
        await self._reads.purge(run_id)
        self._appender.evict(run_id)
        self._signals.fire(f"r:{run_id}")
        self._signals.fire(f"t:{run_id}")
        self._signals.fire(f"s:{run_id}")
        self._signals.fire(_WORLD_KEY)
        self._notifier.add(f"{run_id}:0")
        self._notifier.add(f"t:{run_id}")
        self._notifier.add(f"s:{run_id}")

    # -- Queue -----------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Add a message to ``queue``, deliverable after ``delay`` seconds."""
        self._check_open()
        return await self._queues.enqueue(queue, message, idempotency_key, delay)

    async def lease(
        self,
        queue: str,
        *,
        lease_for: float,
        max_messages: int = 1,
        wait: float = 0.0,
        workflows: Collection[str] | None = None,
        engine_id: str | None = None,
    ) -> list[Lease]:
        """Take up to ``max_messages`` due messages for this consumer, waiting up to
        ``wait`` seconds; see ``Queue.lease``."""
        self._check_open()
        return await self._queues.lease(
            queue, lease_for, max_messages, wait, workflows=workflows, engine_id=engine_id
        )

    async def ack(self, lease: Lease) -> None:
        """Remove a leased message."""
        self._check_open()
        await self._queues.ack(lease)

    async def nack(self, lease: Lease, *, delay: float = 0.0) -> None:
        """Give a leased message back, deliverable after ``delay`` seconds."""
        self._check_open()
        await self._queues.nack(lease, delay)

    async def extend(self, lease: Lease, *, lease_for: float) -> Lease:
        """Keep a lease ``lease_for`` more seconds from now."""
        self._check_open()
        return await self._queues.extend(lease, lease_for)

    # -- Streams ---------------------------------------------------------------------------

    async def write_stream(self, run_id: str, name: str, chunks: Sequence[bytes]) -> int:
        """Append chunks to a run's stream (created on first write); return its length."""
        self._check_open()
        return await self._streams.write(run_id, name, chunks)

    async def close_stream(self, run_id: str, name: str) -> None:
        """Mark a stream finished (idempotent)."""
        self._check_open()
        await self._streams.close(run_id, name)

    async def read_stream(
        self, run_id: str, name: str, *, start: int = 0, follow: bool = True
    ) -> AsyncIterator[StreamChunk]:
        """Chunks from ``start``; with ``follow``, wait for more until the stream is closed."""
        async for chunk in self._streams.read(run_id, name, start, follow):
            yield chunk

    async def list_streams(self, run_id: str) -> list[StreamInfo]:
        """A run's streams, in creation order."""
        self._check_open()
        return await self._streams.list(run_id)

    # -- Notifications ---------------------------------------------------------------------

    async def wait_for_run(
        self,
        run_id: str,
        *,
        after_seq: int,
        timeout: float | None = None,
        terminal: bool = False,
    ) -> int:
        """The run's ``last_seq`` once it exceeds ``after_seq`` (with ``terminal``: and the
        run is terminal), or when ``timeout`` passes."""
        if terminal:
            return await self._wait_for_end(run_id, after_seq, timeout)
        clock = self._clock
        deadline = None if timeout is None else clock.now().timestamp() + max(0.0, timeout)
        key = f"r:{run_id}"
        first = True
        while True:
            self._check_open()
            woken = self._signals.waiter(key)
            cached = self._appender.cached_last_seq(run_id)
            if cached > after_seq:
                return cached
            if first and cached == after_seq > 0:
                # This process wrote or read the log up to after_seq, and no notification
                # has told of more (one would have dropped the cache): what comes next
                # wakes the waiter registered above, so the first re-read is skipped. Later
                # rounds (a poll, a wake-up) read the database: a lost notification costs
                # one poll.
                last_seq: int | None = cached
            else:
                async with self._pool.acquire() as conn:
                    last_seq = await conn.fetchval(self._last_seq_sql, run_id)
            first = False
            if last_seq is None:
                raise RunNotFoundError(f"no run {run_id!r} in this world")
            if last_seq > after_seq:
                return int(last_seq)
            pause = _POLL
            if deadline is not None:
                remaining = deadline - clock.now().timestamp()
                if remaining <= 0:
                    return int(last_seq)
                pause = min(pause, remaining)
            await wait_for_event(woken, pause, clock)

    async def _wait_for_end(self, run_id: str, after_seq: int, timeout: float | None) -> int:
        """``wait_for_run(terminal=True)``: woken by ``t:<run>`` (this process's terminal
        commits, and other processes' in their append's NOTIFY), not by every append."""
        clock = self._clock
        deadline = None if timeout is None else clock.now().timestamp() + max(0.0, timeout)
        key = f"t:{run_id}"
        first = True
        while True:
            self._check_open()
            woken = self._signals.waiter(key)
            ended = self._appender.cached_end(run_id)
            if ended > after_seq:
                return ended  # this process committed (or read) the end: no read needed
            last_seq = self._appender.cached_last_seq(run_id)
            if not (first and last_seq >= after_seq and self._appender.cached_unfinished(run_id)):
                # Unless this process's own overlay says the run goes on (and no
                # notification dropped it since), read where it is. Later rounds (a poll,
                # a wake-up) always read: a lost notification costs one poll.
                async with self._pool.acquire() as conn:
                    row = await conn.fetchrow(self._end_sql, run_id)
                if row is None:
                    raise RunNotFoundError(f"no run {run_id!r} in this world")
                last_seq = int(row["last_seq"])
                if last_seq > after_seq and RunStatus(row["status"]).is_terminal:
                    return last_seq
            first = False
            pause = _POLL
            if deadline is not None:
                remaining = deadline - clock.now().timestamp()
                if remaining <= 0:
                    return last_seq
                pause = min(pause, remaining)
            await wait_for_event(woken, pause, clock)

    async def wait_for_world(self, *, after: int, timeout: float | None = None) -> int:
        """The world's change counter once it exceeds ``after`` (or when ``timeout`` passes)."""
        clock = self._clock
        deadline = None if timeout is None else clock.now().timestamp() + max(0.0, timeout)
        while True:
            self._check_open()
            woken = self._signals.waiter(_WORLD_KEY)
            async with self._pool.acquire() as conn:
                changes = int(await conn.fetchval(self._changes_sql))
            if changes > after:
                return changes
            pause = _POLL
            if deadline is not None:
                remaining = deadline - clock.now().timestamp()
                if remaining <= 0:
                    return changes
                pause = min(pause, remaining)
            await wait_for_event(woken, pause, clock)

    # -- Catalog ---------------------------------------------------------------------------

    async def publish_workflows(self, workflows: Sequence[WorkflowInfo]) -> None:
        """Store catalog entries (last publish of a name wins); see ``Catalog``."""
        self._check_open()
        await self._owners.publish(workflows)

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Every published entry, by name, with the live engines serving it."""
        self._check_open()
        return await self._owners.entries()

    async def get_workflow(self, name: str) -> WorkflowInfo:
        """One published entry; never published → ``WorkflowNotRegisteredError``."""
        self._check_open()
        return await self._owners.entry(name)

    # -- Ownership -------------------------------------------------------------------------

    async def register_engine(self, *, workflows: Collection[str], ttl: float) -> EngineInfo:
        """Register a new engine, live for ``ttl`` seconds of the database's clock."""
        self._check_open()
        return await self._owners.register(workflows, ttl)

    async def heartbeat(self, engine_id: str) -> EngineInfo:
        """Keep a live engine live; a dead one → ``OwnershipLostError``."""
        self._check_open()
        return await self._owners.heartbeat(engine_id)

    async def deregister_engine(self, engine_id: str) -> int:
        """Release the engine's runs and forget it; returns how many runs it released."""
        self._check_open()
        released = await self._owners.deregister(engine_id)
        self._appender.evict()  # cached owners may be stale now
        return released

    async def list_engines(self) -> list[EngineInfo]:
        """The live engines, oldest first."""
        self._check_open()
        return await self._owners.live()

    async def claim_orphans(
        self, engine_id: str, *, workflows: Collection[str], limit: int
    ) -> list[WorkflowRun]:
        """Claim up to ``limit`` orphaned runs of ``workflows``; see ``Ownership``."""
        self._check_open()
        claimed = await self._owners.claim_orphans(engine_id, workflows, limit)
        for run in claimed:
            self._appender.evict(run.run_id)
        return claimed

    async def release_runs(self, engine_id: str, run_ids: Collection[str]) -> int:
        """Release those of ``run_ids`` that ``engine_id`` owns."""
        self._check_open()
        released = await self._owners.release(engine_id, run_ids)
        for run_id in run_ids:
            self._appender.evict(run_id)
        return released

    # -- FlowControl -----------------------------------------------------------------------

    async def acquire_permit(
        self,
        key: str,
        holder: str,
        *,
        run_id: str,
        engine_id: str,
        limit: int,
        period: float | None = None,
        priority: int = 0,
    ) -> PermitGrant:
        """Ask for a permit on ``key`` (on the database's clock); see ``FlowControl``."""
        self._check_open()
        check_permit_arguments(key, holder, limit, period, priority)
        return await self._permits.acquire(
            key,
            holder,
            run_id=run_id,
            engine_id=engine_id,
            limit=limit,
            period=None if period is None else float(period),
            priority=priority,
        )

    async def release_permit(self, key: str, holder: str) -> bool:
        """Give back a concurrency permit (or a place in line); see ``FlowControl``."""
        self._check_open()
        check_permit_key(key, holder)
        return await self._permits.release(key, holder)

    async def list_permits(self, key: str) -> list[Permit]:
        """The permits counting on ``key``, then its line."""
        self._check_open()
        check_permit_key(key)
        return await self._permits.list(key)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish the writes in flight, stop listening and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._signals.fire_all()
        try:
            await self._appender.aclose()
            await self._notifier.aclose()
            await self._maintenance.aclose()
            await self._listener.aclose()
        finally:
            await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
