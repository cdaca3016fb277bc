"""The file world's stream files: one per (run, stream name), a sequence of checked frames.

``streams/<run>/<name>.chunks`` holds frames, each ``kind`` (1 byte), ``length`` (4 bytes,
big-endian), ``crc32`` (4 bytes, of the payload) and the payload. The first frame (``N``) is
a JSON header: the run id, the stream's name and a ULID that orders a run's streams by
creation; ``D``
frames hold the chunks in order; a ``C`` frame closes the stream. Binary chunks need no
escaping this way, and the checksum tells a torn last frame (dropped with a warning) from
damage in the middle (:class:`~worldflow.CorruptLogError`).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from worldflow.errors import CorruptLogError
from worldflow.worlds._file.log import file_stem, list_dir
from worldflow.worlds._ids import new_ulid

__all__ = [
    "LoadedStream",
    "close_frame",
    "data_frames",
    "header_frame",
    "read_all_streams",
    "read_stream_file",
    "read_stream_tail",
    "stream_dir",
    "stream_files",
    "stream_path",
]

logger = logging.getLogger("worldflow.worlds.file")

_HEAD: Final = struct.Struct(">cII")
_NAME, _DATA, _CLOSE = b"N", b"D", b"C"
_SUFFIX: Final = ".chunks"
_STREAMS: Final = "streams"


class _Header(msgspec.Struct, frozen=True):
    run: str
    name: str
    id: str


def stream_dir(run_id: str) -> str:
    """The directory, relative to the world's root, of a run's stream files."""
    return f"{_STREAMS}/{file_stem(run_id)}"


def stream_path(run_id: str, name: str) -> str:
    """The file, relative to the world's root, of one stream."""
    return f"{stream_dir(run_id)}/{file_stem(name)}{_SUFFIX}"


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _HEAD.pack(kind, len(payload), zlib.crc32(payload)) + payload


def header_frame(run_id: str, name: str) -> bytes:
    """The first frame of a new stream file."""
    return _frame(_NAME, msgspec.json.encode(_Header(run_id, name, new_ulid())))


def data_frames(chunks: Iterable[bytes]) -> bytes:
    """Frames for chunks."""
    return b"".join(_frame(_DATA, chunk) for chunk in chunks)


def close_frame() -> bytes:
    """The frame that closes a stream."""
    return _frame(_CLOSE, b"")


@dataclass(slots=True)
class LoadedStream:
    """A stream read back from its file: ``size`` is the byte length of its good frames."""

    path: str
    run_id: str = ""
    name: str = ""
    order: str = ""
    chunks: list[bytes] = field(default_factory=list)
    closed: bool = False
    size: int = 0
    torn: bool = False


def _parse(path: Path, data: bytes, into: LoadedStream) -> None:
    """Parse frames of ``data``, which starts at byte ``into.size`` of the file."""
    base = into.size
    pos = 0
    while pos + _HEAD.size <= len(data):
        kind, length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if end > len(data):
            break  # cut short: torn, or still being written
        payload = data[pos + _HEAD.size : end]
        problem = None
        if zlib.crc32(payload) != crc:
            problem = "checksum mismatch"
        elif kind == _NAME and base + pos == 0:
            try:
                header = msgspec.json.decode(payload, type=_Header)
            except msgspec.DecodeError as exc:
                problem = f"bad header ({exc})"
            else:
                into.run_id, into.name, into.order = header.run, header.name, header.id
        elif kind == _DATA and into.name and not into.closed:
            into.chunks.append(payload)
        elif kind == _CLOSE and into.name and not into.closed:
            into.closed = True
        else:
            problem = f"unexpected frame {kind!r}"
        if problem is not None:
            if end == len(data):
                break  # debris of a torn write
            raise CorruptLogError(
                f"{path}, byte {base + pos}: {problem}. The stream file is damaged before its "
                "end; restore it from a backup, or cut it at that byte."
            )
        pos = end
    into.size = base + pos
    into.torn = pos != len(data)


def stream_files(root: Path, run_id: str) -> list[str]:
    """The stream files of a run, relative to the world's root."""
    rel = stream_dir(run_id)
    return [f"{rel}/{e.name}" for e in list_dir(root / rel, _SUFFIX)]


def read_stream_file(root: Path, rel: str, *, truncate: bool) -> LoadedStream | None:
    """Read one stream file; ``None`` if its header is not (yet) complete.

    With ``truncate`` (the writer), a torn last frame is cut off with a warning, and a file
    whose header never made it to disk is removed.
    """
    path = root / rel
    loaded = LoadedStream(path=rel)
    data = path.read_bytes()
    _parse(path, data, loaded)
    if truncate and loaded.torn:
        logger.warning("%s: dropping %d bytes of a torn last write", path, len(data) - loaded.size)
        if loaded.name:
            os.truncate(path, loaded.size)
        else:
            path.unlink()
    return loaded if loaded.name else None


def read_all_streams(root: Path, *, truncate: bool) -> list[LoadedStream]:
    """Read every stream of the world, each run's in creation order (see
    :func:`read_stream_file`)."""
    streams = []
    for directory in list_dir(root / _STREAMS):
        for entry in list_dir(Path(directory.path), _SUFFIX):
            rel = f"{_STREAMS}/{directory.name}/{entry.name}"
            loaded = read_stream_file(root, rel, truncate=truncate)
            if loaded is not None:
                streams.append(loaded)
    streams.sort(key=lambda s: s.order)
    return streams


def read_stream_tail(root: Path, stream: LoadedStream) -> LoadedStream | None:
    """What was appended to a stream file after ``stream.size`` (read-only followers).

    Returns a :class:`LoadedStream` of the new chunks (``size`` is the new length) or
    ``None`` when nothing complete was added.
    """
    path = root / stream.path
    try:
        if path.stat().st_size <= stream.size:
            return None
        with open(path, "rb") as f:
            f.seek(stream.size)
            data = f.read()
    except FileNotFoundError:
        return None
    tail = LoadedStream(path=stream.path, run_id=stream.run_id, name=stream.name, size=stream.size)
    tail.closed = stream.closed
    _parse(path, data, tail)
    return tail if tail.size > stream.size else None
