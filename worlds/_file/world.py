"""``FileWorld``: durable JSONL storage in a directory, for a laptop or a single server.

Layout of a world directory (format 1)::

    FORMAT                       "worldflow file world" / "format 1": the on-disk format
    LOCK                         flock'ed by the one writer; holds its pid, host and start
    wal                          journal of writes not yet checkpointed (see _file_writer)
    runs/<run>.jsonl             one append-only event log per run (see _file_log)
    streams/<run>/<name>.chunks  a run's output streams (see _file_streams)
    queue.jsonl                  the queue journal (see _file_queue)
    catalog.json                 the workflows engines published (see _file_catalog)

``<run>`` and ``<name>`` are the run id and the stream name with unsafe bytes escaped
(``%XX``) and, when they hold capitals, a short hash appended (for case-insensitive file
systems). Ids and names are read from the files' contents, never from their names.

The logs are the truth; the views live in memory. A file world *is* a memory world (the same
tables, the same rules, the same reads) whose writes reach disk before they count: an append
is checked by the memory world's rules, written and made durable, and only then applied to
the views and announced to waiters. At open every log is replayed through those rules, so a
reopened world shows what the live one did. A last line torn by a crash is logged at WARNING
and cut off before anything is appended; a bad line anywhere else stops the open with
:class:`~worldflow.CorruptLogError` naming the file and line.

Concurrent appends share one sync (group commit through the journal ``wal``); appends to
one run are applied in order, each after the one before it is durable. With ``fsync=False``
nothing is synced: a killed process loses nothing, but a power cut or an OS crash may.

One writer at a time: the writer holds an exclusive ``flock`` on ``LOCK``; a second one gets
:class:`~worldflow.WorldLockedError` naming the holder. The engines of that one process are
its only possible run owners, so run ownership (the ``Ownership`` role, with its fencing
rules) lives in memory, as in the memory world: after a restart every engine is new and every
non-terminal run is an orphan for the first engine that claims it. Flow-control permits
(``FlowControl``) live in memory too, for the same reason: a concurrency permit could not
outlive its engines anyway; a rate limit's window starts afresh after a restart.
``read_only=True``
openers take no lock; they poll the directory every ``poll_interval`` seconds and apply
what is new, so the inspector and the CLI can watch a running engine.

A format change bumps the number in ``FORMAT``; opening a world of another format raises
:class:`~worldflow.ConfigurationError` saying which.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Self

from worldflow.errors import (
    ConfigurationError,
    CorruptLogError,
    EntityConflictError,
    InvalidEventError,
    RunNotFoundError,
    WorldError,
    WorldflowError,
)
from worldflow.worlds._clock import Clock
from worldflow.worlds._events import AnyEvent, Event
from worldflow.worlds._fencing import check_expected_seq
from worldflow.worlds._file.batches import GuardedRun
from worldflow.worlds._file.catalog import CATALOG_FILE, encode_catalog, read_catalog
from worldflow.worlds._file.index import (
    INDEX_FILE,
    creation_keys,
)
from worldflow.worlds._file.load import (
    LOG_SUFFIX,
    RUNS_DIR,
    STREAMS_DIR,
    Disk,
    LogFile,
    without_gc,
)
from worldflow.worlds._file.log import (
    FORMAT_FILE,
    WriterLock,
    check_format,
    encode_record,
    file_stem,
    fsync_dir,
    list_dir,
    write_format,
)
from worldflow.worlds._file.queue import JournaledQueues
from worldflow.worlds._file.streams import (
    LoadedStream,
    close_frame,
    data_frames,
    header_frame,
    stream_dir,
    stream_path,
)
from worldflow.worlds._file.turns import RunTurns
from worldflow.worlds._file.url import parse_file_url
from worldflow.worlds._file.writer import (
    DiskFullError,
    Writer,
    WriterStats,
    observe_failure,
    replay_wal,
    settled,
)
from worldflow.worlds._memory.log import RunState, commit
from worldflow.worlds._memory.world import MemoryWorld
from worldflow.worlds._protocol import EventResult
from worldflow.worlds._records import (
    TERMINAL_RUN_STATUSES,
    Fence,
    Lease,
    Page,
    PermitGrant,
    QueueMessage,
    WorkflowInfo,
)
from worldflow.worlds._rules import Batch

__all__ = ["FileWorld"]

logger = logging.getLogger("worldflow.worlds.file")


class FileWorld(MemoryWorld):
    """A world kept in a directory of JSONL logs; see the module docstring for the layout.

    Args:
        path: the world's directory (created, with its parents, on first open).
        fsync: sync every write before acknowledging it (group-committed). ``False`` is
            unsafe against power loss and OS crashes; use it only where that does not matter.
        clock: where the world reads the time (the system clock by default).
        read_only: open without the writer lock, to read alongside a running writer; every
            write raises :class:`~worldflow.WorldError`.
        poll_interval: how often a read-only world looks for new data, in seconds.

    Open it before use, with ``await world.open()`` or ``async with FileWorld(path) as
    world``, or build it with ``await open_world("file://PATH")``.

    >>> async with FileWorld(".worldflow") as world:  # doctest: +SKIP
    ...     run = await world.get_run("o-1")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        clock: Clock | None = None,
        read_only: bool = False,
        poll_interval: float = 0.1,
    ) -> None:
        super().__init__(clock)
        self.path = Path(path).expanduser().absolute()
        self.fsync = fsync
        self.read_only = read_only
        self.poll_interval = poll_interval
        self._queues: JournaledQueues = JournaledQueues(
            self._clock, on_message=self._index_message, on_gone=self._unindex_message
        )
        self._lock: WriterLock | None = None
        self._writer: Writer | None = None
        self._open_lock: asyncio.Lock | None = None
        self._opened = False
        self._disk = Disk(self.path, self._log, fsync=fsync)
        self._turns = RunTurns()  # writes to one run go one at a time
        self._claims: dict[str, str] = {}  # token -> run of an in-flight append claiming it
        self._closing: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        # run id -> the error of its last append that found the disk full (cleared by the
        # next append that succeeds): its waiters are woken with it
        self._write_failures: dict[str, DiskFullError] = {}
        self._poll_error: WorldflowError | None = None

    @classmethod
    async def from_url(cls, url: str) -> FileWorld:
        """Open the world a ``file://`` URL names.

        ``file://./.worldflow`` and ``file://data/wf`` are relative to the working directory,
        ``file:///var/lib/worldflow`` is absolute. Options go in the query:
        ``?fsync=0`` (unsafe, see the class docs) and ``?read_only=1``.
        """
        path, fsync, read_only = parse_file_url(url)
        world = cls(path, fsync=fsync, read_only=read_only)
        return await world.open()

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> Self:
        """Lock the directory (unless read-only) and rebuild every view from the logs.

        Idempotent. Raises :class:`~worldflow.WorldLockedError` when another writer holds
        the world, :class:`~worldflow.CorruptLogError` for a damaged log, and
        :class:`~worldflow.ConfigurationError` for a directory of another format.
        """
        if self._closed:
            raise WorldError(f"the file world at {self.path} was closed; open a new one")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self._open_now()
        return self

    async def _open_now(self) -> None:
        await asyncio.to_thread(without_gc, self._load)
        loop = asyncio.get_running_loop()
        if self.read_only:
            self._poller = loop.create_task(self._poll(), name=f"worldflow-poll:{self.path}")
        else:
            self._writer = Writer(self.path, fsync=self.fsync, loop=loop, spares_for=RUNS_DIR)
            self._writer.start()
            self._queues.attach(self._writer)
        self._opened = True

    async def __aenter__(self) -> Self:
        return await self.open()

    async def aclose(self) -> None:
        """Write what is pending, sync it, stop the writer and release the lock. Idempotent."""
        if self._closed:
            return
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        try:
            writer = self._writer
            if writer is not None:
                try:
                    if writer.failed is None:
                        index = self._disk.index_bytes()
                        await writer.replace(INDEX_FILE, index, durable=False)
                except WorldError as exc:  # the index is a cache: the next open rebuilds it
                    logger.warning("%s: the index was not written (%s)", self.path, exc)
                finally:
                    await writer.aclose()  # always: the thread ends and its files close
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            await super().aclose()

    @property
    def writer_stats(self) -> WriterStats | None:
        """The writer's counters (commits, writes, syncs); ``None`` if read-only or unopened."""
        return self._writer.stats if self._writer is not None else None

    def _check_open(self) -> None:
        # Called by every read and write: the usual case (open, no error) is one test.
        if self._opened and not self._closed and self._poll_error is None:
            return
        if not self._opened and not self._closed:
            raise WorldError(
                f"the file world at {self.path} is not open yet: `await world.open()` (or "
                "`async with FileWorld(...)`, or `await open_world('file://...')`) first"
            )
        if self._closed:
            raise WorldError(
                f"the file world at {self.path} was closed with aclose(); its data is on disk: "
                "open it again (FileWorld(path).open(), or open_world('file://...'))"
            )
        if self._poll_error is not None:
            raise self._poll_error

    def _disk_full(self, run_id: str, error: DiskFullError) -> None:
        """Wake whoever waits on the run (``Run.result()``, ``wait_for_run``) with the error
        of its failed append: the write that would have moved the run did not happen."""
        self._write_failures[run_id] = error
        state = self._log.runs.get(run_id)
        if state is not None:
            state.changed.fire()
            state.ended.fire()

    def _write_failure(self, run_id: str) -> WorldflowError | None:
        error = self._write_failures.get(run_id)
        return None if error is None else DiskFullError(error.message)

    def _state(self, run_id: str) -> RunState:
        # Every read of one run and every write to it comes here: a damaged log is refused.
        state = super()._state(run_id)
        if state.run.corrupt is not None:
            raise CorruptLogError(self._disk.corrupt[run_id].message)
        return state

    def _writable(self) -> Writer:
        self._check_open()
        if self._writer is None:
            raise WorldError(
                f"the file world at {self.path} is open read-only; open it without "
                "read_only to write (one writer at a time)"
            )
        return self._writer

    # -- loading (in a thread, before the world is shared) -----------------------------------

    def _load(self) -> None:
        root = self.path
        if (root.exists() and not root.is_dir()) or any(
            p.exists() and not p.is_dir() for p in root.parents
        ):
            blocker = next(p for p in (root, *root.parents) if p.exists() and not p.is_dir())
            raise ConfigurationError(
                f"cannot open a file world at {root}: {blocker} is a file, not a directory. "
                "Point the world at a directory (it is created if missing)."
            )
        if self.read_only:
            if not check_format(root):
                raise ConfigurationError(
                    f"there is no worldflow file world at {root} (no {FORMAT_FILE} file)"
                )
            self._disk.load(truncate=False)
            self._catalog.entries = read_catalog(root)
            self._owners.reindex()
            return
        root.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock.acquire(root)
        try:
            new = not check_format(root)
            if new and (list_dir(root / RUNS_DIR) or list_dir(root / STREAMS_DIR)):
                raise ConfigurationError(
                    f"{root} holds world data but no {FORMAT_FILE} marker; it was not "
                    "written by this worldflow. Point the world at another directory."
                )
            replay_wal(root)
            for debris in list_dir(root, ".tmp"):  # left by a write_atomically cut short
                if debris.name.startswith("."):
                    os.unlink(debris.path)
            missing = [root / d for d in (RUNS_DIR, STREAMS_DIR) if not (root / d).exists()]
            for directory in missing:
                directory.mkdir()
            if new:
                write_format(root)  # last, and its directory sync covers the two above
            elif missing and self.fsync:
                fsync_dir(root)
            self._disk.load(truncate=True)
            self._disk.load_queue(self._queues)
            self._catalog.entries = read_catalog(root)
            self._owners.reindex()
        except BaseException:
            self._lock.release()
            self._lock = None
            raise

    # -- EventLog ----------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        """Append a batch atomically; it is durable when this returns. See ``EventLog``."""
        writer = self._writable()
        if type(events) is not list and (
            isinstance(events, Event) or not isinstance(events, Sequence)
        ):
            raise InvalidEventError(
                f"append() takes a sequence of events, not {type(events).__name__}"
            )
        waited = await self._turns.take(run_id)
        try:
            if run_id in self._disk.corrupt:
                raise CorruptLogError(self._disk.corrupt[run_id].message)
            log = self._disk.logs.get(run_id)
            if log is not None and not log.loaded:
                await self._ensure_events(run_id)
                waited = True
            if waited:
                self._check_open()
            view = GuardedRun(self._log, run_id, self._claims)
            stamped = expected_seq is not None
            batch = Batch(view, run_id, self._clock.now(), stamped=stamped)
            before = batch.base_run
            claim = self._fence(before, events, fence)
            if stamped:
                check_expected_seq(run_id, before, expected_seq)
            was_terminal = batch.was_terminal
            for event in events:
                batch.add(event)
            if batch.run is None:  # an empty batch for an unknown run
                raise RunNotFoundError(f"no run {run_id!r} in this world")
            cancelled = False
            if batch.events:
                log = self._disk.logs.get(run_id)
                new = log is None
                if log is None:
                    log = LogFile(f"{RUNS_DIR}/{file_stem(run_id)}{LOG_SUFFIX}")
                line = encode_record(batch.events)
                claimed = batch.claimed_tokens() if batch.tokens else ()
                for token in claimed:
                    self._claims[token] = run_id
                try:
                    cancelled = await settled(writer.append(log.path, line, new=new))
                except DiskFullError as full:
                    self._disk_full(run_id, full)
                    raise
                finally:
                    for token in claimed:
                        del self._claims[token]
                if self._write_failures:
                    self._write_failures.pop(run_id, None)
                log.size += len(line)
                log.lines += 1
                creation_keys(batch.events, log.keys)
                self._disk.logs[run_id] = log
            state = commit(self._log, batch)
            self._owned(state, before, claim)
            if batch.events:
                self._changes += 1
                state.changed.fire()
                self._world_changed.fire()
                if not was_terminal and state.run.status in TERMINAL_RUN_STATUSES:
                    state.ended.fire()
                    state.streams_changed.fire()
            result = EventResult(
                run=state.run,
                events=batch.events,
                steps=list(batch.steps.values()) if batch.steps else [],
                hooks=list(batch.hooks.values()) if batch.hooks else [],
                waits=list(batch.waits.values()) if batch.waits else [],
            )
        finally:
            self._turns.release(run_id)
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def list_events(
        self, run_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> Page[AnyEvent]:
        """Events with ``seq > after_seq``; see ``EventLog.list_events``."""
        self._check_open()
        await self._ensure_events(run_id)
        return await super().list_events(run_id, after_seq=after_seq, limit=limit)

    async def _ensure_events(self, run_id: str) -> None:
        """Read a run's events from its log if they are not in memory yet (see the index)."""
        log = self._disk.logs.get(run_id)
        if log is None or log.loaded:
            return
        try:
            events = await asyncio.to_thread(self._disk.read_events, log.path, log.size)
        except CorruptLogError as exc:  # its index entry was fine, its log is not
            if run_id not in self._disk.corrupt and self._disk.logs.get(run_id) is log:
                self._disk.mark_corrupt(run_id, exc)
                self._changes += 1
                self._world_changed.fire()
            raise
        if not log.loaded and self._disk.logs.get(run_id) is log:  # nobody loaded them meanwhile
            self._log.runs[run_id].events = events
            log.loaded = True

    # -- RunStore ----------------------------------------------------------------------------

    async def purge(self, run_id: str) -> None:
        """Delete a terminal run: its log, its streams and its queue messages."""
        writer = self._writable()
        await self._turns.take(run_id)
        try:
            if not self._state(run_id).run.status.is_terminal:
                await super().purge(run_id)  # refuses it, with the memory world's words
            # the stream files first: once the log is gone, the run is gone after a crash too
            writer.unlink(stream_dir(run_id)).add_done_callback(observe_failure)
            # and the index: a run started again under this id may write a log of the same
            # size as the purged one's, which the index would take for it after a crash
            # (the next open reads every log instead, and writes a new index)
            writer.unlink(INDEX_FILE).add_done_callback(observe_failure)
            cancelled = await settled(writer.unlink(self._disk.logs[run_id].path))
            await super().purge(run_id)
            del self._disk.logs[run_id]
            for key in [k for k in self._disk.streams if k[0] == run_id]:
                del self._disk.streams[key]
        finally:
            self._turns.release(run_id)
        if cancelled:
            raise asyncio.CancelledError

    # -- Queue -------------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Add a message; it is durable when this returns. See ``Queue.enqueue``."""
        self._writable()
        message_id, write = self._queues.enqueue_journaled(queue, message, idempotency_key, delay)
        if write is not None:
            await asyncio.shield(write)
        return message_id

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
        """Take up to ``max_messages`` due messages; see ``Queue.lease``."""
        self._writable()
        return await super().lease(
            queue,
            lease_for=lease_for,
            max_messages=max_messages,
            wait=wait,
            workflows=workflows,
            engine_id=engine_id,
        )

    async def ack(self, lease: Lease) -> None:
        """Remove a leased message; see ``Queue.ack``."""
        self._writable()
        await super().ack(lease)

    async def nack(self, lease: Lease, *, delay: float = 0.0) -> None:
        """Give a leased message back; see ``Queue.nack``."""
        self._writable()
        await super().nack(lease, delay=delay)

    async def extend(self, lease: Lease, *, lease_for: float) -> Lease:
        """Keep a lease longer; see ``Queue.extend``."""
        self._writable()
        return await super().extend(lease, lease_for=lease_for)

    # -- FlowControl (in memory, as ownership is) ------------------------------------------

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
        """Ask for a permit (only the writer holds permits: its engines are the only ones)."""
        self._writable()
        return await super().acquire_permit(
            key,
            holder,
            run_id=run_id,
            engine_id=engine_id,
            limit=limit,
            period=period,
            priority=priority,
        )

    # -- Catalog -----------------------------------------------------------------------------

    async def publish_workflows(self, workflows: Sequence[WorkflowInfo]) -> None:
        """Store catalog entries; durable (``catalog.json`` replaced) when this returns."""
        writer = self._writable()
        self._catalog.publish(workflows)
        await asyncio.shield(writer.replace(CATALOG_FILE, encode_catalog(self._catalog.entries)))

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Every published entry; a read-only world reads the file again first."""
        await self._reload_catalog()
        return await super().list_workflows()

    async def get_workflow(self, name: str) -> WorkflowInfo:
        """One published entry; a read-only world reads the file again first."""
        await self._reload_catalog()
        return await super().get_workflow(name)

    async def _reload_catalog(self) -> None:
        self._check_open()
        if self.read_only:  # the writer may have published since
            self._catalog.entries = await asyncio.to_thread(read_catalog, self.path)

    # -- Streams -----------------------------------------------------------------------------

    async def write_stream(self, run_id: str, name: str, chunks: Sequence[bytes]) -> int:
        """Append chunks; they are durable (and readable) when this returns."""
        writer = self._writable()
        state = self._state(run_id)
        data: list[bytes] = []
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise InvalidEventError(
                    f"stream chunk {i} is a {type(chunk).__name__}; chunks are bytes"
                )
            data.append(bytes(chunk))
        stream = state.streams.get(name)
        if (run_id, name) in self._closing or (stream is not None and stream.closed):
            raise EntityConflictError(f"stream {name!r} of run {run_id!r} is closed")
        cancelled = False
        if data or stream is None:
            payload = self._stream_header(run_id, name) + data_frames(data)
            cancelled = await settled(writer.append(stream_path(run_id, name), payload))
        length = await super().write_stream(run_id, name, data)
        if cancelled:
            raise asyncio.CancelledError
        return length

    async def close_stream(self, run_id: str, name: str) -> None:
        """Mark the stream finished (idempotent); durable when this returns."""
        writer = self._writable()
        state = self._state(run_id)
        key = (run_id, name)
        pending = self._closing.get(key)
        stream = state.streams.get(name)
        if pending is not None:
            await asyncio.shield(pending)
            return
        if stream is not None and stream.closed:
            return
        payload = self._stream_header(run_id, name) + close_frame()
        write = self._closing[key] = writer.append(stream_path(run_id, name), payload)
        try:
            cancelled = await settled(write)
            await super().close_stream(run_id, name)
        finally:
            del self._closing[key]
        if cancelled:
            raise asyncio.CancelledError

    def _stream_header(self, run_id: str, name: str) -> bytes:
        """The header frame if this stream has no file yet, else nothing."""
        key = (run_id, name)
        if key in self._disk.streams:
            return b""
        path = stream_path(run_id, name)
        self._disk.streams[key] = LoadedStream(path=path, run_id=run_id, name=name)
        return header_frame(run_id, name)

    # -- read-only following -----------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)  # real time: this watches the disk
            try:
                changes = await asyncio.to_thread(self._disk.scan)
                self._announce(*self._disk.apply(changes))
            except WorldflowError as exc:
                logger.error("stopped following %s: %s", self.path, exc)
                self._poll_error = exc
                self._world_changed.fire()
                return

    def _announce(self, touched: set[str], removed: list[RunState]) -> None:
        """Wake the readers of what a poll found."""
        if not (touched or removed):
            return
        self._changes += 1
        self._world_changed.fire()
        for state in removed:
            state.changed.fire()
            state.ended.fire()
            state.streams_changed.fire()
        for run_id in touched:
            state = self._log.runs[run_id]
            state.changed.fire()
            if state.run.status in TERMINAL_RUN_STATUSES:
                state.ended.fire()
            state.streams_changed.fire()
