"""How views, events and queue messages are stored: msgspec JSON in ``bytea`` columns.

A view is encoded whole, so what comes back is exactly what was written; payloads inside
(``msgspec.Raw``) are embedded as they are and sliced back out byte for byte. A run's
``input`` is kept in its own column and left out of its view, so the per-append update of
the run row does not rewrite a large input.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from worldflow.worlds._records import (
    NULL,
    Hook,
    QueueMessage,
    Step,
    Wait,
    WorkflowInfo,
    WorkflowRun,
)

__all__ = [
    "RUN_COLUMNS",
    "decode_entry",
    "decode_hook",
    "decode_message",
    "decode_run",
    "decode_step",
    "decode_wait",
    "encode",
    "encode_run",
]

_encoder: Final = msgspec.json.Encoder()
_run: Final = msgspec.json.Decoder(WorkflowRun)
_step: Final = msgspec.json.Decoder(Step)
_hook: Final = msgspec.json.Decoder(Hook)
_wait: Final = msgspec.json.Decoder(Wait)
_message: Final = msgspec.json.Decoder(QueueMessage)
_entry: Final = msgspec.json.Decoder(WorkflowInfo)
_replace: Final = msgspec.structs.replace

encode: Final = _encoder.encode
"""Encode a view, an event or a message as JSON bytes."""


def encode_run(run: WorkflowRun) -> bytes:
    """The run's view without its input and owner (stored in their own columns)."""
    return _encoder.encode(_replace(run, input=NULL, owner_id=None, owner_epoch=0))


def decode_run(row: Any) -> WorkflowRun:
    """The run's view from a row with its ``view``, ``input``, ``owner_id``, ``owner_epoch``."""
    return _replace(
        _run.decode(row["view"]),
        input=msgspec.Raw(row["input"]),
        owner_id=row["owner_id"],
        owner_epoch=row["owner_epoch"],
    )


RUN_COLUMNS: Final = "view, input, owner_id, owner_epoch"
"""The columns :func:`decode_run` reads."""


def decode_step(view: bytes) -> Step:
    """A step's view."""
    return _step.decode(view)


def decode_hook(view: bytes) -> Hook:
    """A hook's view."""
    return _hook.decode(view)


def decode_wait(view: bytes) -> Wait:
    """A wait's view."""
    return _wait.decode(view)


def decode_message(data: bytes) -> QueueMessage:
    """A queue message."""
    return _message.decode(data)


def decode_entry(data: bytes) -> WorkflowInfo:
    """A catalog entry."""
    return _entry.decode(data)
