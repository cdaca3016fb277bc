"""The file world's on-disk pieces: file names, the format marker, the writer lock, log lines.

A run's log is JSONL: one *record* per line, a record being one event (a JSON object, as
:func:`~worldflow.worlds.encode_event` writes it) or one atomic batch of events (a JSON
array of such objects). A batch is one line so that a crash can only tear it as a whole.

:func:`scan_records` reads a log back: a last line cut short by a crash (no newline) is
reported as *torn* (the caller warns and drops it); a complete line that does not decode is
:class:`~worldflow.CorruptLogError` naming the file and line, wherever it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Generic, TypeVar

import msgspec

from worldflow.errors import (
    ConfigurationError,
    CorruptLogError,
    InvalidEventError,
    WorldLockedError,
)
from worldflow.worlds._events import AnyEvent, decode_event, decode_events, encode_event

__all__ = [
    "FORMAT_FILE",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "Scanned",
    "WriterLock",
    "check_format",
    "decode_record",
    "encode_record",
    "file_stem",
    "fsync_dir",
    "list_dir",
    "scan_lines",
    "scan_records",
    "write_atomically",
    "write_format",
]

FORMAT_VERSION: Final = 1
FORMAT_FILE: Final = "FORMAT"
LOCK_FILE: Final = "LOCK"
T = TypeVar("T")
_FORMAT_TEXT: Final = "worldflow file world\nformat {version}\n"
_FORMAT_RE: Final = re.compile(r"^worldflow file world\nformat (\d+)\n?$")

_SAFE_BYTES: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_MAX_STEM: Final = 120


def file_stem(name: str) -> str:
    """A file name (without suffix) for an id or stream name, unique per name.

    Safe ASCII is kept so a directory listing stays readable; every other byte becomes
    ``%XX``. A name with capitals gets a short hash suffix so it stays distinct on
    case-insensitive file systems (macOS); an overly long name is cut and hashed.
    """
    raw = name.encode()
    stem = "".join(chr(b) if b in _SAFE_BYTES else f"%{b:02X}" for b in raw)
    digest = hashlib.sha256(raw).hexdigest()
    if len(stem) > _MAX_STEM:
        return f"{stem[:60]}~{digest}"
    if stem != stem.lower() or not stem:
        return f"{stem}~{digest[:10]}"
    return stem


# -- format marker ---------------------------------------------------------------------------


def write_atomically(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once: a temporary file, synced, renamed over it,
    and the directory synced (the syncs only with ``fsync``). On failure (a full disk) the
    temporary file is removed and ``path`` is left as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written file behind (a full disk)
        raise
    if fsync:
        fsync_dir(path.parent)


def write_format(root: Path) -> None:
    """Write the format marker of a new world (atomically, durably)."""
    write_atomically(root / FORMAT_FILE, _FORMAT_TEXT.format(version=FORMAT_VERSION).encode())


def check_format(root: Path) -> bool:
    """Check the world's format marker; ``False`` if there is none.

    A marker of another version raises :class:`ConfigurationError` telling what to do.
    """
    try:
        text = (root / FORMAT_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    match = _FORMAT_RE.match(text)
    if match is None:
        raise ConfigurationError(
            f"{root / FORMAT_FILE} is not a worldflow file-world format marker "
            f"(it reads {text[:60]!r}); is {root} the right directory?"
        )
    version = int(match.group(1))
    if version != FORMAT_VERSION:
        newer = "a newer" if version > FORMAT_VERSION else "an older"
        raise ConfigurationError(
            f"the file world at {root} uses on-disk format {version}, and this worldflow "
            f"reads format {FORMAT_VERSION}: it was written by {newer} worldflow. Open it with "
            "a worldflow that matches, or point this one at a new directory."
        )
    return True


def list_dir(path: Path, suffix: str = "") -> list[os.DirEntry[str]]:
    """The entries of a directory whose names end with ``suffix``; none if it is missing."""
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.name.endswith(suffix)]
    except FileNotFoundError:
        return []


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (files created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- writer lock -----------------------------------------------------------------------------


class WriterLock:
    """The exclusive ``flock`` that keeps a second writer off a world directory.

    The holder writes its pid, host and start time into the lock file, so a refused opener
    can say who holds it. The lock dies with its process (even on ``kill -9``).
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, root: Path) -> WriterLock:
        """Take the lock or raise :class:`WorldLockedError` naming its holder."""
        import fcntl  # POSIX only; imported here so the module itself imports anywhere

        path = root / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorldLockedError(
                f"the file world at {root} is open for writing by {holder}; only one writer "
                "may open it. Stop that process, or open this one with read_only=True "
                "(file://...?read_only=1) to read alongside it."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        except OSError:  # a full disk: the lock holds all the same, unnamed
            pass
        return cls(fd, path)

    def release(self) -> None:
        """Give the lock up (idempotent); the file stays, empty, for the next writer."""
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    since = f" since {info['since']}" if info.get("since") else ""
    return f"pid {info['pid']} on host {info.get('host', '?')}{since}"


# -- log records -----------------------------------------------------------------------------


def encode_record(events: Sequence[AnyEvent]) -> bytes:
    """One log line for a batch: a single event object, or an array for several."""
    if len(events) == 1:
        return encode_event(events[0]) + b"\n"
    return b"[" + b",".join(encode_event(e) for e in events) + b"]\n"


def decode_record(line: bytes) -> list[AnyEvent]:
    """The events of one log line (see :func:`encode_record`)."""
    if line[:1] == b"[":
        events = decode_events(line)
        if not events:
            raise InvalidEventError("empty batch")
        return events
    return [decode_event(line)]


@dataclass(slots=True)
class Scanned(Generic[T]):
    """What :func:`scan_lines` found: the decoded lines (line number, value) in order, how
    many bytes they span, whether bytes after them were dropped as a torn tail, how many
    lines were consumed, and (with ``partial``) the corruption that stopped the scan."""

    items: list[tuple[int, T]]
    size: int
    torn: bool
    lines: int
    corrupt: CorruptLogError | None = None


def scan_lines(
    path: Path,
    data: bytes,
    decode: Callable[[bytes], T],
    *,
    first_line: int = 1,
    partial: bool = False,
) -> Scanned[T]:
    """Decode the lines of ``data`` (a JSONL file, or its tail from a line boundary).

    Only a last line without its newline is torn (a crash cut the write short): it is left
    out and ``torn`` is set. Every newline-terminated line was written whole, so one that
    does not decode is damage, not a crash: :class:`CorruptLogError` naming ``path`` and the
    line, raised, or with ``partial`` returned in ``corrupt`` with the lines before it.
    """
    items: list[tuple[int, T]] = []
    end = data.rfind(b"\n") + 1  # bytes up to the last newline hold complete lines
    pos = 0
    line_no = first_line
    while pos < end:
        nl = data.index(b"\n", pos)
        try:
            items.append((line_no, decode(data[pos:nl])))
        except (InvalidEventError, msgspec.DecodeError) as exc:
            reason = exc.message if isinstance(exc, InvalidEventError) else str(exc)
            error = CorruptLogError(
                f"{path}, line {line_no}: {reason}. The line is complete (it ends with a "
                "newline), so this is damage, not a crash's torn write; restore the file "
                f"from a backup, or cut it before line {line_no} (losing what came after)."
            )
            if not partial:
                raise error from None
            return Scanned(items, pos, False, line_no - first_line, error)
        pos = nl + 1
        line_no += 1
    return Scanned(items, end, end != len(data), line_no - first_line)


def scan_records(
    path: Path, data: bytes, *, first_line: int = 1, partial: bool = False
) -> Scanned[list[AnyEvent]]:
    """Decode a run log's records; see :func:`scan_lines`."""
    return scan_lines(path, data, decode_record, first_line=first_line, partial=partial)
