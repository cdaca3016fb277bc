"""Reading a file world's directory into the views: at open, and for read-only followers.

:class:`Disk` owns what the views need to know about the files: each run's log (where, how
long, its creation keys, whether its events are in memory) and each stream file. At open it
takes each run from the index when the index still describes its log, and replays the log
otherwise (see ``_file_index``); a read-only follower calls :meth:`Disk.scan` (in a thread)
and :meth:`Disk.apply` (on the loop) to take in what the writer added.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import unquote_to_bytes

import msgspec

from worldflow.errors import CorruptLogError, WorldflowError
from worldflow.worlds._events import AnyEvent
from worldflow.worlds._file.batches import rebuild_tokens, reorder, replay_record
from worldflow.worlds._file.index import (
    INDEX_FILE,
    IndexEntry,
    creation_keys,
    decode_index,
    encode_index,
)
from worldflow.worlds._file.log import Scanned, list_dir, scan_records, write_atomically
from worldflow.worlds._file.queue import QUEUE_FILE, JournaledQueues
from worldflow.worlds._file.streams import (
    LoadedStream,
    read_all_streams,
    read_stream_file,
    read_stream_tail,
    stream_files,
)
from worldflow.worlds._memory.log import LogState, RunState, StreamState, commit
from worldflow.worlds._records import NULL, RunStatus, StepStatus, WorkflowRun

__all__ = ["LOG_SUFFIX", "RUNS_DIR", "STREAMS_DIR", "Changes", "Disk", "LogFile", "without_gc"]

logger = logging.getLogger("worldflow.worlds.file")

RUNS_DIR: Final = "runs"
STREAMS_DIR: Final = "streams"
LOG_SUFFIX: Final = ".jsonl"
_RECENT_NS: Final = 2_000_000_000

Records = list[tuple[int, list[AnyEvent]]]


@dataclass(slots=True)
class LogFile:
    """A run's log file: where it is, how much of it the views hold (bytes, lines), the ids
    of the events that created the run, its hooks and waits (see ``_file_index``), and
    whether its events are in memory."""

    path: str
    size: int = 0
    lines: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    loaded: bool = True


@dataclass(slots=True)
class Changes:
    """What a read-only poll found on disk."""

    new: list[tuple[str, Scanned[list[AnyEvent]]]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    grown: list[tuple[str, Records, int, int]] = field(default_factory=list)
    corrupt: list[tuple[str, CorruptLogError]] = field(default_factory=list)
    streams: list[tuple[str, LoadedStream]] = field(default_factory=list)


class Disk:
    """The files behind a world's views; see the module docstring."""

    def __init__(self, root: Path, log: LogState, *, fsync: bool) -> None:
        self.root = root
        self.log = log
        self.fsync = fsync
        self.logs: dict[str, LogFile] = {}
        self.streams: dict[tuple[str, str], LoadedStream] = {}
        self.runs_mtime = 0
        # run id -> why its log cannot be used; such a run is listed, marked, and unreadable
        self.corrupt: dict[str, CorruptLogError] = {}
        # index entries of truncated logs, kept in the index as the evidence of it
        self.evidence: dict[str, IndexEntry] = {}

    # -- open (in the opener's thread, before the world is shared) ---------------------------

    def load(self, *, truncate: bool) -> None:
        """Build the views of every run and stream; ``truncate`` (the writer) cuts torn tails
        off and rewrites the index if it had to replay logs."""
        runs_dir = self.root / RUNS_DIR
        try:
            self.runs_mtime = runs_dir.stat().st_mtime_ns
        except FileNotFoundError:
            self.runs_mtime = 0
        found = sorted((e.name, e.stat().st_size) for e in list_dir(runs_dir, LOG_SUFFIX))
        index = self._read_index()
        replayed = 0
        for name, size in found:
            rel = f"{RUNS_DIR}/{name}"
            entry = index.get(rel)
            if entry is not None and entry.size == size and not entry.slim:
                self._install_entry(entry)
                continue
            if entry is not None and size < entry.size:
                # shorter than it was: truncated, unless it is a new run's log (purged and
                # started again under the same id before the index was rewritten)
                scanned = self.read_log(rel, truncate=False)
                if scanned is None or _first_event_id(scanned) == entry.keys.get(""):
                    self._install_truncated(rel, entry, size, scanned)
                    replayed += 1
                    continue
            scanned = self.read_log(rel, truncate=truncate)
            if scanned is not None:
                self.install_log(rel, scanned)
                replayed += 1
        reorder(self.log, {run_id: log.keys for run_id, log in self.logs.items()})
        self._load_streams(truncate=truncate)
        if truncate and (replayed or len(index) != len(self.logs)):
            self._write_index()

    def _read_index(self) -> dict[str, IndexEntry]:
        path = self.root / INDEX_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return {}
        return decode_index(path, data)

    def index_bytes(self) -> bytes:
        """The index of the views as they are now (a damaged log has no entry, so the next
        open reads it again and finds the damage again; a truncated one keeps its old one)."""
        entries = [
            IndexEntry.of(
                self.log.runs[run_id], path=log.path, size=log.size, lines=log.lines, keys=log.keys
            )
            for run_id, log in self.logs.items()
            if run_id not in self.corrupt
        ]
        return encode_index([*entries, *self.evidence.values()])

    def _write_index(self) -> None:
        """Write the index while the world is still private to the opener (in its thread)."""
        try:
            write_atomically(self.root / INDEX_FILE, self.index_bytes(), fsync=False)
        except OSError as exc:  # a cache: a full disk must not stop the open
            logger.warning("%s: the index was not rewritten (%s)", self.root / INDEX_FILE, exc)

    def _install_entry(self, entry: IndexEntry) -> RunState:
        """Take a run's views from the index; its events stay on disk until needed."""
        state = entry.to_state()
        run_id = state.run.run_id
        self._claim_run_id(run_id, entry.path)
        self.log.runs[run_id] = state
        self.logs[run_id] = LogFile(entry.path, entry.size, entry.lines, dict(entry.keys), False)
        return state

    def _claim_run_id(self, run_id: str, rel: str) -> None:
        if run_id in self.logs:
            other = self.logs[run_id].path
            raise CorruptLogError(
                f"{self.root / rel}, line 1: run {run_id!r} also has the log {other}"
            )

    def read_log(self, rel: str, *, truncate: bool) -> Scanned[list[AnyEvent]] | None:
        """Read and decode a whole log; with ``truncate``, cut off a torn last line. A
        damaged log is returned with its ``corrupt`` set (and never cut)."""
        path = self.root / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # purged meanwhile
        scanned = scan_records(path, data, partial=True)
        if scanned.corrupt is not None:
            return scanned
        if scanned.torn:
            if truncate:
                logger.warning(
                    "%s: dropping %d bytes of a torn last line (a crash interrupted a write "
                    "that was never acknowledged)",
                    path,
                    len(data) - scanned.size,
                )
                with open(path, "r+b") as f:
                    f.truncate(scanned.size)
                    if self.fsync:
                        os.fsync(f.fileno())
            else:
                logger.debug("%s: ignoring an incomplete last line", path)
        if not scanned.items:
            if truncate:
                path.unlink()  # a run whose first write never completed
            return None
        return scanned

    def install_log(self, rel: str, scanned: Scanned[list[AnyEvent]]) -> RunState:
        """Replay a decoded log into the views (a run new to them). A damaged log gives a
        run marked ``corrupt`` holding what the log said before the damage."""
        run_id = scanned.items[0][1][0].run_id if scanned.items else _run_id_of(rel)
        self._claim_run_id(run_id, rel)
        self.logs[run_id] = LogFile(rel)
        error = scanned.corrupt
        state: RunState | None = None
        if scanned.items:
            try:
                state = self.replay(run_id, scanned.items, scanned.size, scanned.lines)
            except CorruptLogError as exc:
                error = exc
        if error is None:
            assert state is not None
            return state
        return self.mark_corrupt(run_id, error)

    def mark_corrupt(self, run_id: str, error: CorruptLogError) -> RunState:
        """Make ``run_id`` a damaged run: listed with the mark, every use refused."""
        logger.error("%s; the run %r cannot be used until its log is repaired", error, run_id)
        self.corrupt[run_id] = error
        state = self.log.runs.get(run_id)
        if state is None:  # nothing of it could be read: a placeholder to list it by
            when = datetime.now(UTC)
            placeholder = WorkflowRun(
                run_id=run_id,
                workflow_name="",
                status=RunStatus.PENDING,
                input=NULL,
                created_at=when,
                updated_at=when,
            )
            state = RunState(run=placeholder, index=len(self.log.run_order))
            self.log.runs[run_id] = state
            self.log.run_order.append(state)
            self.logs[run_id].keys.setdefault("", "")  # sorts first in creation order
        state.run = msgspec.structs.replace(state.run, corrupt=error.message)
        return state

    def _install_truncated(
        self, rel: str, entry: IndexEntry, size: int, scanned: Scanned[list[AnyEvent]] | None
    ) -> None:
        path = self.root / rel
        error = CorruptLogError(
            f"{path}: the log has {size} bytes, but the index recorded {entry.size} bytes "
            f"({entry.lines} lines) for it: it was truncated, and the events after byte {size} "
            "are lost. Restore it from a backup (the run is not rolled back silently)."
        )
        self.evidence[rel] = entry
        if scanned is None:
            scanned = Scanned([], 0, False, 0)
        scanned.corrupt = error
        if scanned.items:
            self.install_log(rel, scanned)
        else:
            self._install_unreadable(rel, entry.run.run_id, error)

    def _install_unreadable(self, rel: str, run_id: str, error: CorruptLogError) -> None:
        self._claim_run_id(run_id, rel)
        self.logs[run_id] = LogFile(rel)
        self.mark_corrupt(run_id, error)

    def replay(self, run_id: str, records: Records, size: int, lines: int) -> RunState:
        log = self.logs[run_id]
        state: RunState | None = None
        for line_no, events in records:
            try:
                batch = replay_record(self.log, run_id, events)
            except WorldflowError as exc:
                raise CorruptLogError(
                    f"{self.root / log.path}, line {line_no}: the logged events break the "
                    f"world's rules ({exc.message}); the log was edited or damaged"
                ) from None
            state = commit(self.log, batch)
            creation_keys(batch.events, log.keys)
        assert state is not None
        log.size += size
        log.lines += lines
        return state

    def _load_streams(self, *, truncate: bool) -> None:
        for loaded in read_all_streams(self.root, truncate=truncate):
            state = self.log.runs.get(loaded.run_id)
            if state is None:
                logger.warning("%s: a stream of no known run; ignored", self.root / loaded.path)
                continue
            state.streams[loaded.name] = StreamState(loaded.chunks, loaded.closed)
            loaded.chunks = []  # the views hold them now; this keeps only where the file ends
            self.streams[(loaded.run_id, loaded.name)] = loaded

    def load_queue(self, queues: JournaledQueues) -> None:
        """Replay the queue journal into ``queues`` and rewrite it compactly (the writer)."""
        path = self.root / QUEUE_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        size = queues.load(path, data)
        if size != len(data):
            logger.warning("%s: dropping %d bytes of a torn last line", path, len(data) - size)
        compact = queues.snapshot()  # start from one line per live message
        if compact != data:
            try:
                write_atomically(path, compact, fsync=self.fsync)
            except OSError as exc:  # a full disk: keep the journal as it is, minus a torn tail
                logger.warning("%s: not compacted (%s)", path, exc)
                if size != len(data):
                    os.truncate(path, size)

    def read_events(self, rel: str, size: int) -> list[AnyEvent]:
        """The events in the first ``size`` bytes of a log."""
        path = self.root / rel
        with open(path, "rb") as f:
            data = f.read(size)
        return [event for _, batch in scan_records(path, data).items for event in batch]

    def scan(self) -> Changes:
        """Find log growth, new logs, removed logs and stream growth (in a thread; reads only)."""
        changes = Changes()
        runs_dir = self.root / RUNS_DIR
        mtime = runs_dir.stat().st_mtime_ns
        known = {log.path: run_id for run_id, log in self.logs.items()}
        # File times tick coarsely (a few ms): a log created in the same tick as the last
        # look leaves the time as it was, so a recently changed directory is listed anyway.
        if mtime != self.runs_mtime or time.time_ns() - mtime < _RECENT_NS:
            self.runs_mtime = mtime
            names = {f"{RUNS_DIR}/{e.name}" for e in list_dir(runs_dir, LOG_SUFFIX)}
            changes.removed = [run_id for rel, run_id in known.items() if rel not in names]
            for rel in sorted(names - known.keys()):
                scanned = self.read_log(rel, truncate=False)
                if scanned is not None:
                    changes.new.append((rel, scanned))
        for run_id, state in list(self.log.runs.items()):
            if run_id in self.corrupt:
                continue  # nothing more is read of it until it is repaired
            if (
                state.run.status.is_terminal
                and not any(s.status is StepStatus.RUNNING for s in state.steps.values())
                and all(s.closed for s in state.streams.values())
            ):
                continue  # nothing more can be written to it (but a purge, seen above)
            self._scan_run(run_id, changes)
        return changes

    def _scan_run(self, run_id: str, changes: Changes) -> None:
        log = self.logs[run_id]
        path = self.root / log.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        reread = size < log.size or (size > log.size and not log.loaded)
        if reread:
            # rewritten under us (a restarted writer cut unacknowledged lines), or grown while
            # its events are not in memory: read it again from the start, streams too
            scanned = self.read_log(log.path, truncate=False)
            changes.removed.append(run_id)
            if scanned is not None:
                changes.new.append((log.path, scanned))
        elif size > log.size:
            with open(path, "rb") as f:
                f.seek(log.size)
                data = f.read(size - log.size)
            scanned = scan_records(path, data, first_line=log.lines + 1, partial=True)
            if scanned.items:
                changes.grown.append((run_id, scanned.items, scanned.size, scanned.lines))
            if scanned.corrupt is not None:
                changes.corrupt.append((run_id, scanned.corrupt))
        known = set() if reread else {s.path for (r, _), s in self.streams.items() if r == run_id}
        for rel in stream_files(self.root, run_id):
            if rel not in known:
                loaded = read_stream_file(self.root, rel, truncate=False)
                if loaded is not None:
                    changes.streams.append((run_id, loaded))
        for (r, _), stream in list(self.streams.items()):
            if r == run_id and not stream.closed and not reread:
                tail = read_stream_tail(self.root, stream)
                if tail is not None:
                    changes.streams.append((run_id, tail))

    def apply(self, changes: Changes) -> tuple[set[str], list[RunState]]:
        """Take in what :meth:`scan` found (on the loop). Returns the ids of the runs that
        changed and the states of the runs that are gone; waking their readers is the
        caller's."""
        touched: set[str] = set()
        removed: list[RunState] = []
        for run_id in changes.removed:
            state = self.log.runs.get(run_id)
            if state is not None:
                self.log.purge(state)
                del self.logs[run_id]
                self.corrupt.pop(run_id, None)
                for key in [k for k in self.streams if k[0] == run_id]:
                    del self.streams[key]
                removed.append(state)
        for run_id, records, size, lines in changes.grown:
            if run_id in self.log.runs and run_id not in self.corrupt:
                try:
                    self.replay(run_id, records, size, lines)
                except CorruptLogError as exc:
                    self.mark_corrupt(run_id, exc)
                touched.add(run_id)
        for run_id, error in changes.corrupt:
            if run_id in self.log.runs and run_id not in self.corrupt:
                self.mark_corrupt(run_id, error)
                touched.add(run_id)
        for rel, scanned in changes.new:
            touched.add(self.install_log(rel, scanned).run.run_id)
        for run_id, loaded in changes.streams:
            state = self.log.runs.get(run_id)
            if state is None:
                continue
            stream = state.streams.setdefault(loaded.name, StreamState())
            stream.chunks.extend(loaded.chunks)
            stream.closed = loaded.closed
            loaded.chunks = []
            known = self.streams.setdefault((run_id, loaded.name), loaded)
            known.size, known.closed = loaded.size, loaded.closed
            touched.add(run_id)
        if touched or removed:
            rebuild_tokens(self.log)
        return touched, removed


def _first_event_id(scanned: Scanned[list[AnyEvent]]) -> str | None:
    """The id of a log's first event (its ``run_created``), if it has one."""
    return scanned.items[0][1][0].event_id if scanned.items else None


def _run_id_of(rel: str) -> str:
    """The run id a log's file name was made from (see ``file_stem``), as near as it can be
    told: for a log none of whose events can be read. A cut name keeps what is left."""
    stem = rel.rpartition("/")[2].removesuffix(LOG_SUFFIX).partition("~")[0]
    return unquote_to_bytes(stem).decode("utf-8", "replace") or stem or rel


def without_gc(load: Callable[[], None]) -> None:
    """Run a bulk load with the cycle collector paused.

    Building the views allocates millions of objects that all live on; the collector would
    walk them again and again while they pile up (half the time of opening a big world),
    and finds nothing: they hold no cycles. It is paused for the length of the open only.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        load()
    finally:
        if enabled:
            gc.enable()
