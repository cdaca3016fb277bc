"""How views, events and queue messages are stored: msgspec JSON in ``bytea`` columns.

A view is encoded whole, so what comes back is exactly what was written; payloads inside
(``msgspec.Raw``) are embedded as they are and sliced back out byte for byte. A run's
``input`` is kept in its own column and left out of its view, so the per-append update of
the run row does not rewrite a large input.
"""

from __future__ import annotations

from typing import Final

import msgspec

from worldflow.worlds._records import NULL, Hook, QueueMessage, Step, Wait, WorkflowRun

__all__ = [
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
_replace: Final = msgspec.structs.replace

encode: Final = _encoder.encode
"""Encode a view, an event or a message as JSON bytes."""


def encode_run(run: WorkflowRun) -> bytes:
    """The run's view without its input (stored in its own column)."""
    return _encoder.encode(_replace(run, input=NULL))


def decode_run(view: bytes, input: bytes) -> WorkflowRun:
    """The run's view from its stored view and input columns."""
    return _replace(_run.decode(view), input=msgspec.Raw(input))


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
