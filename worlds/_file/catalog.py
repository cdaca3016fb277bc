"""The file world's catalog file: the published workflow entries, replaced whole.

``catalog.json`` holds a JSON array of :class:`WorkflowInfo` entries (without their live
engines, which are this process's registrations). It is small and changes when an engine
starts, so each publish rewrites it atomically (temp file, sync, rename) through the writer.
A file that does not parse is reported with :class:`~worldflow.CorruptLogError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import msgspec

from worldflow.errors import CorruptLogError
from worldflow.worlds._records import WorkflowInfo

__all__ = ["CATALOG_FILE", "encode_catalog", "read_catalog"]

CATALOG_FILE: Final = "catalog.json"
_decoder = msgspec.json.Decoder(list[WorkflowInfo])


def encode_catalog(entries: dict[str, WorkflowInfo]) -> bytes:
    """The file's contents for ``entries`` (by name)."""
    return msgspec.json.encode([entries[name] for name in sorted(entries)]) + b"\n"


def read_catalog(root: Path) -> dict[str, WorkflowInfo]:
    """The entries stored under ``root`` (none if there is no file yet)."""
    path = root / CATALOG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        entries = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptLogError(f"{path}: the workflow catalog does not parse: {exc}") from None
    return {entry.name: entry for entry in entries}
