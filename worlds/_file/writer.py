"""The file world's writer thread: group commit through a write-ahead journal.

Every write of a file world (log lines, queue journal lines, stream chunks, purges) goes
through one :class:`Writer`, which owns a thread. The event loop hands it operations and
awaits their futures; the thread takes *every* operation pending at that moment, writes
each to its file, appends one frame per write to the journal ``wal``, makes the journal
durable with a single sync, and only then settles all their futures. So a hundred runs
appending at once share one sync instead of paying a hundred, whatever files they touch.

The journal is preallocated (written with zeros ahead of use) and overwritten in place, so
its sync is a ``fdatasync`` that moves no metadata: on ext4 a sync that must commit
metadata also flushes every other file's pending appends, which is what the journal is
there to avoid. Each frame carries the journal's *generation*; the first frame of the file
is a marker naming the current one, so frames of an older generation left further on are
never mistaken for new ones.

The per-run files are not synced on each commit. Every few megabytes of journal (and at
close) a *checkpoint* syncs every file written since the previous one and the directories
that gained or lost files, then starts a new generation. After a crash, :func:`replay_wal`
makes sure every journaled write is in its file before anything reads them: a process
killed with ``kill -9`` leaves its writes in the kernel's page cache (the frames then
simply match), and after a power cut the journal restores what the files lost.

With ``fsync=False`` there is no journal and no sync at all: fast, and safe against a
killed process, but not against a power cut or an OS crash.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import shutil
import struct
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from worldflow.errors import CorruptLogError, DiskFullError, WorldError
from worldflow.worlds._file.log import fsync_dir, write_atomically
from worldflow.worlds._file.spares import Spares

__all__ = [
    "WAL_FILE",
    "DiskFullError",
    "Writer",
    "WriterStats",
    "observe_failure",
    "replay_wal",
    "settled",
    "sync_data",
]

logger = logging.getLogger("worldflow.worlds.file")

WAL_FILE: Final = "wal"
_WAL_LIMIT: Final = 8 * 1024 * 1024  # journal bytes that trigger a checkpoint
_WAL_STEP: Final = 64 * 1024  # the journal grows by zeroed steps of at least this
_MAX_OPEN_FILES: Final = 256
_FRAME_HEAD: Final = struct.Struct(">II")  # payload length, crc32 of the payload


class _Frame(msgspec.Struct, array_like=True, frozen=True):
    """One journal frame. ``op``: ``"g"`` marks the start of generation ``gen``; ``"w"``
    wrote ``data`` at ``offset`` of ``path``; ``"x"`` removed ``path`` (a file or a tree)."""

    gen: int
    op: str
    path: str = ""
    offset: int = 0
    data: bytes = b""


_frame_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(_Frame)


def _encode_frame(frame: _Frame) -> bytes:
    payload = _frame_encoder.encode(frame)
    return _FRAME_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def _new_generation() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1


def sync_data(fd: int) -> None:
    """Make a file's data durable (``fdatasync``; the full flush on macOS)."""
    if sys.platform == "darwin":  # pragma: no cover - fsync() on macOS skips the disk cache
        import fcntl

        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover
        os.fsync(fd)


@dataclass(slots=True)
class WriterStats:
    """Counters for tests and benchmarks: commits (groups), writes, syncs, checkpoints, and
    new run logs that were spares linked into place rather than created."""

    groups: int = 0
    writes: int = 0
    syncs: int = 0
    checkpoints: int = 0
    spares: int = 0


_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class _Durable(asyncio.Future[None]):
    """The future of a submitted write: it settles when the write is durable, and refuses
    to be cancelled (a write once handed to the thread happens). A task cancelled while it
    awaits one gets its ``CancelledError`` once the write is done, so it can finish its
    bookkeeping first, without the extra future and callbacks of ``asyncio.shield``."""

    def cancel(self, msg: object = None) -> bool:
        return False


@dataclass(slots=True)
class _Op:
    kind: str  # append, unlink, replace, replace-cache, sync, checkpoint, stop
    path: str = ""
    data: bytes = b""
    future: asyncio.Future[None] | None = None
    new: bool = False  # an append to a file expected not to exist yet


class _Journal:
    """The preallocated write-ahead journal (used by the writer thread only)."""

    def __init__(self, path: Path, stats: WriterStats) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.capacity = os.fstat(self.fd).st_size
        self.stats = stats
        self.gen = 0
        self.offset = 0
        self.paths: set[str] = set()  # files with frames in this generation
        created = self.capacity == 0
        self.restart()
        if created:
            fsync_dir(path.parent)  # the journal's own directory entry

    def frame(self, op: str, path: str, offset: int = 0, data: bytes = b"") -> bytes:
        if op == "w":
            self.paths.add(path)
        return _encode_frame(_Frame(self.gen, op, path, offset, data))

    def commit(self, frames: list[bytes]) -> None:
        """Write frames after the last ones and make them durable."""
        data = b"".join(frames)
        grown = self._reserve(self.offset + len(data))
        _pwrite_all(self.fd, data, self.offset)
        if grown:
            os.fsync(self.fd)  # the size changed too: a full sync, once per growth
        else:
            sync_data(self.fd)  # overwriting zeros moves no metadata
        self.offset += len(data)  # only once durable: a failed commit is voided from here
        self.stats.syncs += 1

    def restart(self) -> None:
        """Begin a new generation: everything journaled so far is durable in its file."""
        self.gen = _new_generation()
        self.paths.clear()
        self.offset = 0
        self.commit([self.frame("g", "")])

    def _reserve(self, end: int) -> bool:
        """Grow the file with zeros to hold ``end`` bytes; return whether it grew."""
        if end <= self.capacity:
            return False
        grown = max(end, self.capacity * 2, _WAL_STEP)
        _pwrite_all(self.fd, bytes(grown - self.capacity), self.capacity)
        self.capacity = grown
        return True

    def close(self) -> None:
        os.close(self.fd)


class Writer:
    """Group-committing writer of one world directory; see the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool,
        loop: asyncio.AbstractEventLoop,
        spares_for: str | None = None,
    ) -> None:
        self.root = root
        self.fsync = fsync
        self.stats = WriterStats()
        # new files in this directory (the run logs) are spares linked into place
        self._spares_dir = spares_for
        self._spares = Spares(root) if spares_for is not None else None
        self._loop = loop
        self._ops: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._stopping = False
        self._failed: BaseException | None = None
        self._files: OrderedDict[str, list[int]] = OrderedDict()  # path -> [fd, size]
        self._dirty: set[str] = set()  # files written since the last checkpoint
        self._dirty_dirs: set[Path] = set()  # directories whose entries changed since then
        self._journal: _Journal | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"worldflow-file-writer:{root}", daemon=True
        )

    # -- the event loop's side -----------------------------------------------------------

    def start(self) -> None:
        """Start the thread (the journal is opened on it) and the pool of spare files."""
        self._thread.start()
        if self._spares is not None:
            self._spares.start()

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the writer, if any."""
        return self._failed

    def append(self, path: str, data: bytes, *, new: bool = False) -> asyncio.Future[None]:
        """Append ``data`` to ``path`` (relative to the root); the future settles once durable.

        ``new``: the caller expects no such file yet (a new run's log), so a spare is linked
        there without looking first (a link never replaces a file that does exist).
        """
        return self._submit(_Op("append", path, data, _Durable(loop=self._loop), new))

    def append_nowait(self, path: str, data: bytes) -> None:
        """Append without waiting: durable with the next commit (for writes that may be lost,
        such as a queue acknowledgement, whose loss only means a redelivery)."""
        self._enqueue(_Op("append", path, data))

    def unlink(self, path: str) -> asyncio.Future[None]:
        """Remove a file or directory tree, durably."""
        return self._submit(_Op("unlink", path, future=_Durable(loop=self._loop)))

    def replace(self, path: str, data: bytes, *, durable: bool = True) -> asyncio.Future[None]:
        """Replace a whole file atomically (temp file, sync, rename, sync the directory).

        ``durable=False`` skips the syncs, for a cache that is checked when read (the index):
        a crash then leaves the old file, the new one, or one that does not parse.
        """
        kind = "replace" if durable else "replace-cache"
        return self._submit(_Op(kind, path, data, _Durable(loop=self._loop)))

    def sync(self) -> asyncio.Future[None]:
        """A future that settles once everything submitted before it is durable."""
        return self._submit(_Op("sync", future=_Durable(loop=self._loop)))

    def checkpoint(self) -> asyncio.Future[None]:
        """Sync every file written so far and start a new journal generation."""
        return self._submit(_Op("checkpoint", future=_Durable(loop=self._loop)))

    def _submit(self, op: _Op) -> asyncio.Future[None]:
        assert op.future is not None
        self._enqueue(op)
        return op.future

    def _enqueue(self, op: _Op) -> None:
        if self._failed is not None:
            raise self._error()
        if self._stopping:
            raise WorldError(f"the file world at {self.root} is closed")
        self._ops.put(op)

    async def aclose(self) -> None:
        """Write what is pending, checkpoint, stop the thread, close every file."""
        if self._stopping:
            return
        if self._thread.is_alive() and self._failed is None:
            try:
                await self.checkpoint()
            except WorldError:
                pass  # recorded in self._failed; closing goes on
        self._stopping = True
        if self._thread.is_alive():
            self._ops.put(_Op("stop"))
            await asyncio.to_thread(self._thread.join)

    def _error(self) -> WorldError:
        return WorldError(
            f"the file world at {self.root} stopped after a failed write ({self._failed!r}). "
            "Close it and open it again: the open replays the logs and the journal."
        )

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.fsync:
                self._journal = _Journal(self.root / WAL_FILE, self.stats)
        except BaseException as exc:
            logger.exception("file world writer could not open its journal at %s", self.root)
            self._failed = exc
        stop = False
        while not stop:
            ops = [self._ops.get()]
            while True:
                try:
                    ops.append(self._ops.get_nowait())
                except queue.Empty:
                    break
            stop = ops[-1].kind == "stop"
            if self._failed is None:
                try:
                    self._commit(ops)
                except DiskFullError as full:  # nothing of the group stayed; the writer goes on
                    logger.error("%s", full.message)
                    self._settle([(op.future, full) for op in ops if op.future is not None])
                    continue
                except BaseException as exc:  # settle the waiters whatever went wrong
                    logger.exception("file world writer failed at %s", self.root)
                    self._failed = exc
            if self._failed is not None:
                error = self._error()
                self._settle([(op.future, error) for op in ops if op.future is not None])
        self._close_files()

    def _commit(self, ops: list[_Op]) -> None:
        starts: dict[str, int] = {}  # file -> its length before this group's appends
        try:
            self._write_group(ops, starts)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            self._undo(starts)  # truncating frees space: it works on a full disk too
            raise DiskFullError(
                f"the file world at {self.root} could not write: no space left on the "
                f"device (ENOSPC: {exc.strerror}). Nothing of this write was stored and the "
                "world goes on serving reads. Free space on that file system and write "
                "again: writes are taken again as soon as they fit (runs whose writes failed "
                "are driven again by engine.recover() or an engine restart)."
            ) from exc
        self.stats.groups += 1
        self._settle([(op.future, None) for op in ops if op.future is not None])
        if self._journal is not None and self._journal.offset > _WAL_LIMIT:
            self._checkpoint()

    def _undo(self, starts: dict[str, int]) -> None:
        """Cut every file this group appended to back to its length before the group, and
        void journal frames it may have left past the journal's end."""
        for path, start in starts.items():
            entry = self._files.get(path)
            if entry is not None:
                os.ftruncate(entry[0], start)
                entry[1] = start
            else:  # closed meanwhile (too many open files)
                fd = os.open(self.root / path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, start)
                finally:
                    os.close(fd)
        journal = self._journal
        if journal is not None and journal.offset + _FRAME_HEAD.size <= journal.capacity:
            # a zero length where the next frame goes ends the generation there, so frames
            # of the failed group are never replayed after a crash (preallocated: no space
            # is needed to overwrite it)
            _pwrite_all(journal.fd, bytes(_FRAME_HEAD.size), journal.offset)
            sync_data(journal.fd)

    def _write_group(self, ops: list[_Op], starts: dict[str, int]) -> None:
        journal = self._journal
        frames: list[bytes] = []
        for op in ops:
            if op.kind == "append":
                entry = self._open(op.path, new=op.new)
                if op.path not in starts:
                    starts[op.path] = entry[1]
                offset = self._write(op.path, entry, op.data)
                if journal is not None:
                    frames.append(journal.frame("w", op.path, offset, op.data))
            elif op.kind == "unlink":
                self._remove(op.path)
                if journal is not None:
                    frames.append(journal.frame("x", op.path))
            elif op.kind in ("replace", "replace-cache"):
                if journal is not None and op.path in journal.paths:
                    self._checkpoint()  # its old frames must not be replayed over the new file
                    frames.clear()
                self._replace(op.path, op.data, durable=op.kind == "replace")
            elif op.kind == "checkpoint":
                self._checkpoint()
                frames.clear()
        if frames:
            assert journal is not None
            journal.commit(frames)

    def _settle(self, results: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
        if results:
            try:
                self._loop.call_soon_threadsafe(_settle_futures, results)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _open(self, path: str, *, new: bool = False) -> list[int]:
        entry = self._files.get(path)
        if entry is not None:
            self._files.move_to_end(path)
            return entry
        full = self.root / path
        fd = None
        if new and self._spares is not None and path.rpartition("/")[0] == self._spares_dir:
            fd = self._spares.take(full)
        if fd is not None:
            self.stats.spares += 1
            self._dirty_dirs.add(full.parent)
            entry = [fd, 0]
        else:
            flags = os.O_WRONLY | os.O_APPEND
            try:
                fd = os.open(full, flags)
            except FileNotFoundError:
                self._dirty_dirs.update(_makedirs(full.parent, self.root))
                fd = os.open(full, flags | os.O_CREAT, 0o644)
                self._dirty_dirs.add(full.parent)
            entry = [fd, os.fstat(fd).st_size]
        self._files[path] = entry
        if len(self._files) > _MAX_OPEN_FILES:
            _, (old_fd, _) = self._files.popitem(last=False)
            os.close(old_fd)  # if it is dirty, the checkpoint opens it again to sync it
        return entry

    def _write(self, path: str, entry: list[int], data: bytes) -> int:
        offset = entry[1]
        _write_all(entry[0], data)
        entry[1] = offset + len(data)
        self._dirty.add(path)
        self.stats.writes += 1
        return offset

    def _forget(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for known in [p for p in self._files if p == path or p.startswith(prefix)]:
            fd, _ = self._files.pop(known)
            os.close(fd)
            self._dirty.discard(known)

    def _remove(self, path: str) -> None:
        self._forget(path)
        full = self.root / path
        if full.is_dir():
            shutil.rmtree(full)
        else:
            try:
                full.unlink()
            except FileNotFoundError:
                return
        self._dirty_dirs.add(full.parent)

    def _replace(self, path: str, data: bytes, *, durable: bool) -> None:
        self._forget(path)
        full = self.root / path
        write_atomically(full, data, fsync=self.fsync and durable)
        if self.fsync and durable:
            self.stats.syncs += 2

    def _checkpoint(self) -> None:
        journal = self._journal
        if journal is None:
            return
        dirty = list(self._dirty)
        if len(dirty) > 4:
            # syncs of different files overlap well in the kernel; run them side by side
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wf-sync")
            list(self._pool.map(self._sync_file, dirty))
        else:
            for path in dirty:
                self._sync_file(path)
        self.stats.syncs += len(dirty)
        for directory in sorted(self._dirty_dirs, key=lambda p: len(p.parts), reverse=True):
            if directory.exists():
                fsync_dir(directory)
                self.stats.syncs += 1
        self._dirty.clear()
        self._dirty_dirs.clear()
        journal.restart()
        self.stats.checkpoints += 1

    def _sync_file(self, path: str) -> None:
        entry = self._files.get(path)
        if entry is not None:
            os.fsync(entry[0])
            return
        fd = os.open(self.root / path, os.O_RDONLY)  # closed to bound the open files
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_files(self) -> None:
        for fd, _ in self._files.values():
            os.close(fd)
        self._files.clear()
        if self._spares is not None:
            self._spares.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _settle_futures(results: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in results:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _makedirs(directory: Path, root: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return the parents whose entries changed."""
    missing: list[Path] = []
    current = directory
    while not current.exists() and current != root:
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return [d.parent for d in missing]


def _frames(data: bytes) -> tuple[list[_Frame], int]:
    """The frames of the journal's current generation, and where they end."""
    frames: list[_Frame] = []
    pos = 0
    gen: int | None = None
    while pos + _FRAME_HEAD.size <= len(data):
        length, crc = _FRAME_HEAD.unpack_from(data, pos)
        payload = data[pos + _FRAME_HEAD.size : pos + _FRAME_HEAD.size + length]
        if not length or len(payload) < length or zlib.crc32(payload) != crc:
            break  # zeros ahead of use, or a frame cut short by the crash
        try:
            frame = _frame_decoder.decode(payload)
        except msgspec.DecodeError:
            break
        if gen is None:
            if frame.op != "g":
                break
            gen = frame.gen
        elif frame.gen != gen:
            break  # left over from an older generation
        frames.append(frame)
        pos += _FRAME_HEAD.size + length
    return frames, pos


def replay_wal(root: Path, on_warning: Callable[[str], None] | None = None) -> int:
    """Make every write in ``root``'s journal present in its file; return how many there were.

    Files that had lost journaled bytes (a power cut) get them back and are cut after the
    last journaled write: what followed it was never acknowledged. Then the journal starts a
    new generation, so its frames are never replayed again over files changed after this.
    """
    wal = root / WAL_FILE
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return 0
    warn = on_warning or logger.warning
    frames, _ = _frames(data)
    # A write to a file that a later frame removes (a purged run's log) is not put back:
    # the file is gone for good, and what it held before the journal began is gone too.
    removed_later: set[int] = set()
    removed: list[str] = []
    for index in range(len(frames) - 1, -1, -1):
        frame = frames[index]
        if frame.op == "x":
            removed.append(frame.path)
        elif frame.op == "w" and any(
            frame.path == gone or frame.path.startswith(gone + "/") for gone in removed
        ):
            removed_later.add(index)
    touched: set[Path] = set()
    dirs: set[Path] = set()
    repaired: set[Path] = set()
    ends: dict[Path, int] = {}
    applied = 0
    for index, frame in enumerate(frames):
        full = root / frame.path
        if index in removed_later:
            continue
        if frame.op == "x":
            if full.is_dir():
                shutil.rmtree(full)
            elif full.exists():
                full.unlink()
            touched.discard(full)
            repaired.discard(full)
            dirs.add(full.parent)
        elif frame.op == "w":
            dirs.update(_makedirs(full.parent, root))
            dirs.add(full.parent)
            fd = os.open(full, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size < frame.offset:
                    raise CorruptLogError(
                        f"{wal}: a journaled write to {full} starts at byte {frame.offset}, "
                        f"but the file has only {size} bytes: the file lost data the journal "
                        "does not hold. Restore it from a backup."
                    )
                if os.pread(fd, len(frame.data), frame.offset) != frame.data:
                    _pwrite_all(fd, frame.data, frame.offset)
                    repaired.add(full)
                ends[full] = frame.offset + len(frame.data)
            finally:
                os.close(fd)
            touched.add(full)
        else:
            continue
        applied += 1
    if repaired:
        warn(f"{wal}: restored journaled writes to {len(repaired)} file(s) that had lost them")
    for full in touched:
        fd = os.open(full, os.O_RDWR)
        try:
            if full in repaired:
                # what follows a restored write is debris of unacknowledged writes
                os.ftruncate(fd, ends[full])
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory in dirs:
        if directory.exists():
            fsync_dir(directory)
    fd = os.open(wal, os.O_RDWR)
    try:
        _pwrite_all(fd, _encode_frame(_Frame(_new_generation(), "g")), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return applied


async def settled(future: asyncio.Future[None]) -> bool:
    """Wait for a write even if the waiting task is cancelled meanwhile.

    What follows a write (applying it to the views) must happen once it is on disk, or the
    views would miss what the logs hold. Returns whether a cancellation arrived; the caller
    finishes its bookkeeping and then raises it. A failed write raises its error.

    The writer's futures refuse cancellation, so a cancelled task is woken (with its
    ``CancelledError``) only once the write is done.
    """
    try:
        await future
    except asyncio.CancelledError:
        if not future.done() or future.cancelled():
            raise
        future.result()  # a failed write raises its error rather than the cancellation
        return True
    return False


def observe_failure(future: asyncio.Future[None]) -> None:
    """A done-callback for a write nobody awaits: fetch its error so none goes unlogged."""
    if not future.cancelled():
        future.exception()
