"""The in-memory world: the reference implementation of the :class:`World` protocol.

Everything lives in dicts and lists indexed for the hot paths: appending to a run, reading a
run, its events or a hook by token, and leasing a message cost the same whether the world holds
ten runs or a million. Only ``list_runs`` / ``list_hooks`` / ``list_waits`` with filters walk
their table from the cursor on. The reads (the ``RunStore`` role) are in :mod:`.reads`; the
queues, ownership and catalog tables in their own modules beside this one.

It is safe under concurrent asyncio tasks on one event loop: every write runs from start to
finish without awaiting, so a batch is checked and committed before any other task can look.
It is not thread-safe. Timed waits (``lease(wait=)``, notification timeouts) end on the
world's :class:`Clock` (``clock.sleep``), so a virtual clock drives them in tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec

from worldflow.errors import (
    ConfigurationError,
    EntityConflictError,
    InvalidEventError,
    RunNotFoundError,
    RunNotTerminalError,
    RunTerminalError,
    StreamNotFoundError,
    WorldflowError,
)
from worldflow.worlds._clock import Clock, SystemClock
from worldflow.worlds._events import AnyEvent, Event
from worldflow.worlds._fencing import Claim, check_expected_seq, check_fence
from worldflow.worlds._memory.catalog import Entries
from worldflow.worlds._memory.log import LogState, RunState, StoredRun, StreamState, commit
from worldflow.worlds._memory.ownership import Owners
from worldflow.worlds._memory.queue import MemoryQueues
from worldflow.worlds._memory.reads import RunReads
from worldflow.worlds._permits import PermitTable, check_permit_arguments, check_permit_key
from worldflow.worlds._protocol import PERMIT_WAIT_TTL, EventResult
from worldflow.worlds._read_args import check_limit
from worldflow.worlds._records import (
    TERMINAL_RUN_STATUSES,
    EngineInfo,
    Fence,
    Lease,
    Page,
    Permit,
    PermitGrant,
    QueueMessage,
    StreamChunk,
    StreamInfo,
    WorkflowInfo,
    WorkflowRun,
)
from worldflow.worlds._rules import Batch
from worldflow.worlds._wakeups import Signal, wait_for_event

__all__ = ["MemoryWorld"]

T = TypeVar("T")


class MemoryWorld(RunReads):
    """A world held in this process's memory: for tests, demos and single-process services.

    Args:
        clock: Where timestamps and queue due times come from; the system clock by default.

    Example:
        >>> world = MemoryWorld()  # doctest: +SKIP
        >>> await world.append("wrun_1", [RunCreated(run_id="wrun_1", ...)])  # doctest: +SKIP
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._log = LogState()
        self._messages_by_run: dict[str, set[tuple[str, str]]] = {}
        self._queues = MemoryQueues(
            self._clock, on_message=self._index_message, on_gone=self._unindex_message
        )
        self._changes = 0
        self._world_changed = Signal()
        self._closed = False
        self._owners = Owners(self._clock, self._log)
        self._catalog = Entries(self._owners)
        self._permits = PermitTable(
            now=self._clock.now,
            engine_live=self._owners.is_live,
            run_active=self._run_active,
            wait_ttl=PERMIT_WAIT_TTL,
        )

    @classmethod
    async def from_url(cls, url: str) -> MemoryWorld:
        """Build a fresh, empty world from ``memory://`` (what ``open_world`` calls)."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "memory" or parts.netloc or parts.path or parts.query:
            raise ConfigurationError(
                f"invalid memory world URL {url!r}: it is just 'memory://' (every call opens a "
                "new, empty world)"
            )
        return cls()

    @property
    def clock(self) -> Clock:
        """The clock this world reads."""
        return self._clock

    def _write_failure(self, run_id: str) -> WorldflowError | None:
        """Why the run's last append failed for want of storage (a world on disk), if so:
        ``wait_for_run`` raises it rather than wait for a write that did not happen."""
        return None

    # -- EventLog --------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        """Append a batch of events atomically; see the rules of ``worldflow.worlds``."""
        if self._closed:
            self._check_open()
        if type(events) is not list and (
            isinstance(events, Event) or not isinstance(events, Sequence)
        ):
            raise InvalidEventError(
                f"append() takes a sequence of events, not {type(events).__name__}"
            )
        stamped = expected_seq is not None
        batch = Batch(StoredRun(self._log, run_id), run_id, self._clock.now(), stamped=stamped)
        before = batch.base_run
        claim = self._fence(before, events, fence)
        if stamped:
            check_expected_seq(run_id, before, expected_seq)
        was_terminal = batch.was_terminal
        for event in events:
            batch.add(event)
        if batch.run is None:  # an empty batch for an unknown run
            raise RunNotFoundError(f"no run {run_id!r} in this world")
        state = commit(self._log, batch)
        self._owned(state, before, claim)
        if batch.events:
            self._changes += 1
            state.changed.fire()
            self._world_changed.fire()
            if not was_terminal and state.run.status in TERMINAL_RUN_STATUSES:
                state.ended.fire()
                state.streams_changed.fire()  # followers of a stream that never came end
        return EventResult(
            run=state.run,
            events=batch.events,
            steps=list(batch.steps.values()) if batch.steps else [],
            hooks=list(batch.hooks.values()) if batch.hooks else [],
            waits=list(batch.waits.values()) if batch.waits else [],
        )

    def _fence(
        self, before: WorkflowRun | None, events: Sequence[AnyEvent], fence: Fence | None
    ) -> Claim | None:
        """The ownership rules (before anything is stored): the claim the batch makes."""
        if fence is None and (before is None or before.owner_id is None):
            return None  # no engine involved: nothing to check (the single-process path)
        return check_fence(before, events, fence, self._owners.is_live)

    def _owned(self, state: RunState, before: WorkflowRun | None, claim: Claim | None) -> None:
        """Record the owner a committed batch gave its run, and index a new run."""
        if before is None:
            if claim is not None:
                state.run = msgspec.structs.replace(
                    state.run, owner_id=claim[0], owner_epoch=claim[1]
                )
            self._owners.created(state.run)
        elif claim is not None:
            self._owners.set_owner(state, *claim)

    async def list_events(
        self, run_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> Page[AnyEvent]:
        """Events of a run with ``seq > after_seq``; ``cursor`` is the last ``seq`` returned."""
        self._check_open()
        events = self._state(run_id).events
        start = max(0, after_seq)
        if limit is None:
            return Page(items=events[start:])
        check_limit(limit)
        items = events[start : start + limit]
        if start + limit < len(events):
            return Page(items=items, cursor=str(items[-1].seq), has_more=True)
        return Page(items=items)

    async def purge(self, run_id: str) -> None:
        """Delete a terminal run and everything of it."""
        self._check_open()
        state = self._state(run_id)
        if not state.run.status.is_terminal:
            raise RunNotTerminalError(
                f"run {run_id!r} is {state.run.status.value}: only a completed, failed or "
                "cancelled run can be purged (cancel it first)"
            )
        for queue, message_id in self._messages_by_run.pop(run_id, ()):
            self._queues.drop(queue, message_id)
        self._log.purge(state)
        self._changes += 1
        state.changed.fire()
        state.ended.fire()
        state.streams_changed.fire()
        self._world_changed.fire()

    # -- Queue -----------------------------------------------------------------------------

    def _index_message(self, run_id: str, queue: str, message_id: str) -> None:
        self._messages_by_run.setdefault(run_id, set()).add((queue, message_id))

    def _unindex_message(self, run_id: str, queue: str, message_id: str) -> None:
        held = self._messages_by_run.get(run_id)
        if held is not None:
            held.discard((queue, message_id))
            if not held:
                del self._messages_by_run[run_id]

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
        return self._queues.enqueue(queue, message, idempotency_key, delay)

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
        accept = None
        if workflows is not None or engine_id is not None:
            served = None if workflows is None else frozenset(workflows)
            is_live = self._owners.is_live

            def accept(message: QueueMessage) -> bool:
                target = message.engine_id
                if target is not None and target != engine_id and is_live(target):
                    return False  # its owner is live: it is the owner's
                name = message.workflow_name
                return served is None or name is None or name in served

        return await self._queues.lease(queue, lease_for, max_messages, wait, accept)

    async def ack(self, lease: Lease) -> None:
        """Remove a leased message."""
        self._check_open()
        self._queues.ack(lease)

    async def nack(self, lease: Lease, *, delay: float = 0.0) -> None:
        """Give a leased message back, deliverable after ``delay`` seconds."""
        self._check_open()
        self._queues.nack(lease, delay)

    async def extend(self, lease: Lease, *, lease_for: float) -> Lease:
        """Keep a lease ``lease_for`` more seconds from now."""
        self._check_open()
        return self._queues.extend(lease, lease_for)

    # -- Streams ---------------------------------------------------------------------------

    async def write_stream(self, run_id: str, name: str, chunks: Sequence[bytes]) -> int:
        """Append chunks to a run's stream (created on first write); return its length."""
        self._check_open()
        state = self._state(run_id)
        data: list[bytes] = []
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidEventError(
                    f"stream chunk {i} is a {type(chunk).__name__}; chunks are bytes"
                )
            data.append(bytes(chunk))
        stream = state.streams.get(name)
        if stream is None:
            stream = state.streams[name] = StreamState()
        if stream.closed:
            raise EntityConflictError(f"stream {name!r} of run {run_id!r} is closed")
        stream.chunks.extend(data)
        state.streams_changed.fire()
        return len(stream.chunks)

    async def close_stream(self, run_id: str, name: str) -> None:
        """Mark a stream finished (idempotent; closing an unwritten stream creates it empty)."""
        self._check_open()
        state = self._state(run_id)
        stream = state.streams.get(name)
        if stream is None:
            stream = state.streams[name] = StreamState()
        if not stream.closed:
            stream.closed = True
            state.streams_changed.fire()

    async def read_stream(
        self, run_id: str, name: str, *, start: int = 0, follow: bool = True
    ) -> AsyncIterator[StreamChunk]:
        """Chunks from ``start``; with ``follow``, wait for more until the stream is closed.

        A followed stream that never appears ends with ``StreamNotFoundError`` once its run is
        terminal; one that is never closed is followed until the run is purged.
        """
        index = max(0, start)
        while True:
            self._check_open()
            state = self._state(run_id)
            changed = state.streams_changed.waiter()  # before looking, so no write is missed
            stream: StreamState | None = state.streams.get(name)
            if stream is None:
                if not follow or state.run.status.is_terminal:
                    raise StreamNotFoundError(f"run {run_id!r} has no stream {name!r}")
            else:
                while index < len(stream.chunks):
                    yield StreamChunk(index=index, data=stream.chunks[index])
                    index += 1
                if stream.closed or not follow:
                    return
            await changed.wait()

    async def list_streams(self, run_id: str) -> list[StreamInfo]:
        """A run's streams, in creation order."""
        self._check_open()
        state = self._state(run_id)
        return [
            StreamInfo(run_id=run_id, name=name, length=len(s.chunks), closed=s.closed)
            for name, s in state.streams.items()
        ]

    # -- Notifications ---------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> datetime | None:
        if timeout is None:
            return None
        return self._clock.now() + timedelta(seconds=max(0.0, timeout))

    def _remaining(self, deadline: datetime | None) -> float | None:
        if deadline is None:
            return None
        return (deadline - self._clock.now()).total_seconds()

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
        deadline = self._deadline(timeout)
        while True:
            self._check_open()
            state = self._state(run_id)
            run = state.run
            last_seq = run.last_seq
            if last_seq > after_seq and (not terminal or run.status in TERMINAL_RUN_STATUSES):
                return last_seq
            failure = self._write_failure(run_id)
            if failure is not None:
                raise failure
            signal = state.ended if terminal else state.changed
            if not await wait_for_event(signal.waiter(), self._remaining(deadline), self._clock):
                return state.run.last_seq if run_id in self._log.runs else last_seq

    async def wait_for_world(self, *, after: int, timeout: float | None = None) -> int:
        """The world's change counter once it exceeds ``after`` (or when ``timeout`` passes)."""
        deadline = self._deadline(timeout)
        while True:
            self._check_open()
            if self._changes > after:
                return self._changes
            if not await wait_for_event(
                self._world_changed.waiter(), self._remaining(deadline), self._clock
            ):
                return self._changes

    # -- Catalog ---------------------------------------------------------------------------

    async def publish_workflows(self, workflows: Sequence[WorkflowInfo]) -> None:
        """Store catalog entries (last publish of a name wins); see ``Catalog``."""
        self._check_open()
        self._catalog.publish(workflows)

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Every published entry, by name, with the live engines serving it."""
        self._check_open()
        return self._catalog.list()

    async def get_workflow(self, name: str) -> WorkflowInfo:
        """One published entry; never published → ``WorkflowNotRegisteredError``."""
        self._check_open()
        return self._catalog.get(name)

    # -- Ownership -------------------------------------------------------------------------

    async def register_engine(self, *, workflows: Collection[str], ttl: float) -> EngineInfo:
        """Register a new engine, live for ``ttl`` seconds of this world's clock."""
        self._check_open()
        return self._owners.register(workflows, ttl)

    async def heartbeat(self, engine_id: str) -> EngineInfo:
        """Keep a live engine live; a dead one → ``OwnershipLostError``."""
        self._check_open()
        return self._owners.heartbeat(engine_id)

    async def deregister_engine(self, engine_id: str) -> int:
        """Release the engine's runs and forget it; returns how many runs it released."""
        self._check_open()
        released = self._owners.deregister(engine_id)
        if released:
            self._changes += 1
            self._world_changed.fire()
        return released

    async def list_engines(self) -> list[EngineInfo]:
        """The live engines, oldest first."""
        self._check_open()
        return self._owners.live()

    async def claim_orphans(
        self, engine_id: str, *, workflows: Collection[str], limit: int
    ) -> list[WorkflowRun]:
        """Claim up to ``limit`` orphaned runs of ``workflows``; see ``Ownership``."""
        self._check_open()
        claimed = self._owners.claim_orphans(engine_id, workflows, limit)
        if claimed:
            self._changes += 1
            self._world_changed.fire()
        return claimed

    # -- FlowControl -----------------------------------------------------------------------

    def _run_active(self, run_id: str) -> bool:
        state = self._log.runs.get(run_id)
        return state is not None and not state.run.status.is_terminal

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
        """Ask for a permit on ``key``; see ``FlowControl``."""
        self._check_open()
        check_permit_arguments(key, holder, limit, period, priority)
        if self._state(run_id).run.status.is_terminal:
            raise RunTerminalError(f"run {run_id!r} has ended: it needs no permit")
        return self._permits.acquire(
            key,
            holder,
            run_id=run_id,
            engine_id=engine_id,
            limit=limit,
            period=period,
            priority=priority,
        )

    async def release_permit(self, key: str, holder: str) -> bool:
        """Give back a concurrency permit (or a place in line); see ``FlowControl``."""
        self._check_open()
        check_permit_key(key, holder)
        return self._permits.release(key, holder)

    async def list_permits(self, key: str) -> list[Permit]:
        """The permits counting on ``key``, then its line."""
        self._check_open()
        check_permit_key(key)
        return self._permits.list(key)

    async def release_runs(self, engine_id: str, run_ids: Collection[str]) -> int:
        """Release those of ``run_ids`` that ``engine_id`` owns."""
        self._check_open()
        return self._owners.release(engine_id, run_ids)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the world: wake every waiter (they raise) and refuse further use."""
        if self._closed:
            return
        self._closed = True
        self._queues.close()
        self._world_changed.fire()
        for state in self._log.runs.values():
            state.changed.fire()
            state.ended.fire()
            state.streams_changed.fire()

    async def __aenter__(self) -> MemoryWorld:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
