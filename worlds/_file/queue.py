"""The file world's queue: the memory world's queues, with every change journaled to
``queue.jsonl``.

Why a journal rather than deriving pending work from the run logs at open: the queue is a
general at-least-once queue (any message, any queue name, delays, attempt counts), and a
derivation would only know the engine's own messages and would lose delays and attempts.
The journal rides on the writer's group commit, so it adds no sync of its own: an enqueue
returns once its line is durable, together with whatever else committed in that group.
Leases, acks and nacks are written without waiting: losing one in a crash only means a
redelivery, which at-least-once delivery allows. A message is deliverable as soon as it is
enqueued in memory; anything a consumer then writes is queued behind the enqueue's line, so
no durable effect of a message can outlive a lost enqueue.

Journal lines (JSON, tag ``op``): ``enqueue`` (the whole message), ``lease`` (a delivery and
its attempt number), ``ack`` (gone: acknowledged or purged), ``nack`` (back, due at ``due``)
and ``due`` (an idempotent enqueue moved the delivery time earlier). At open the journal is
replayed; leases held when the world stopped died with their holder, so those messages are
deliverable at once, their attempt counts kept. The journal is then rewritten with one line
per live message, and again whenever it grows well past that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Final

import msgspec

from worldflow.worlds._clock import Clock
from worldflow.worlds._file.log import scan_lines
from worldflow.worlds._file.writer import Writer
from worldflow.worlds._memory.queue import Accept, MemoryQueues, _Message, _Queue
from worldflow.worlds._records import Lease, QueueMessage

__all__ = ["QUEUE_FILE", "JournaledQueues"]

QUEUE_FILE: Final = "queue.jsonl"
_COMPACT_MIN_RECORDS: Final = 4096


class _Enqueued(msgspec.Struct, tag_field="op", tag="enqueue", frozen=True):
    id: str
    queue: str
    message: QueueMessage
    due: datetime
    key: str | None = None
    attempt: int = 0
    leased: bool = False  # written by a compaction: the lease dies with this process


class _Leased(msgspec.Struct, tag_field="op", tag="lease", frozen=True):
    id: str
    attempt: int


class _Acked(msgspec.Struct, tag_field="op", tag="ack", frozen=True):
    id: str


class _Nacked(msgspec.Struct, tag_field="op", tag="nack", frozen=True):
    id: str
    due: datetime


class _Moved(msgspec.Struct, tag_field="op", tag="due", frozen=True):
    id: str
    due: datetime


_Record = _Enqueued | _Leased | _Acked | _Nacked | _Moved
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Record)


class JournaledQueues(MemoryQueues):
    """:class:`MemoryQueues` that journal each change through the world's writer."""

    def __init__(
        self,
        clock: Clock,
        *,
        on_message: Callable[[str, str, str], None],
        on_gone: Callable[[str, str, str], None],
    ) -> None:
        super().__init__(clock, on_message=on_message, on_gone=on_gone)
        self._writer: Writer | None = None
        self._records = 0
        self._unsaved: dict[str, asyncio.Future[None]] = {}  # enqueues not yet durable

    def attach(self, writer: Writer) -> None:
        """Start journaling through ``writer``."""
        self._writer = writer

    # -- open ------------------------------------------------------------------------------

    def load(self, path: Path, data: bytes) -> int:
        """Replay a journal (at open, before any use); return the byte length of its good lines."""
        scanned = scan_lines(path, data, _decoder.decode)
        found: dict[str, _Message] = {}
        leased: set[str] = set()
        for _, record in scanned.items:
            if isinstance(record, _Enqueued):
                found[record.id] = _Message(
                    message_id=record.id,
                    queue=record.queue,
                    message=record.message,
                    available_at=record.due,
                    key=record.key,
                    attempt=record.attempt,
                )
                if record.leased:
                    leased.add(record.id)
                continue
            msg = found.get(record.id)
            if msg is None:
                continue  # about a message gone before this line's compaction
            match record:
                case _Leased(attempt=attempt):
                    msg.attempt = attempt
                    msg.key = None  # a delivered message gives its key up for good
                    leased.add(msg.message_id)
                case _Acked():
                    del found[msg.message_id]
                case _Nacked(due=due):
                    msg.available_at = due
                    leased.discard(msg.message_id)
                case _Moved(due=due):
                    msg.available_at = due
        now = self._clock.now()
        for msg in found.values():
            queue = self._queue(msg.queue)
            queue.messages[msg.message_id] = msg
            if msg.key is not None:
                queue.keys[msg.key] = msg.message_id
            due = min(msg.available_at, now) if msg.message_id in leased else msg.available_at
            self._schedule(queue, msg, due)
            self._on_message(msg.message.run_id, msg.queue, msg.message_id)
        return scanned.size

    def snapshot(self) -> bytes:
        """The journal rewritten: one ``enqueue`` line per live message."""
        lines = [
            _encoder.encode(
                _Enqueued(
                    msg.message_id,
                    msg.queue,
                    msg.message,
                    msg.available_at,
                    msg.key,
                    msg.attempt,
                    leased=msg.lease_id is not None,
                )
            )
            + b"\n"
            for queue in self._queues.values()
            for msg in queue.messages.values()
        ]
        self._records = len(lines)
        return b"".join(lines)

    # -- journaled changes -----------------------------------------------------------------

    def enqueue_journaled(
        self, name: str, message: QueueMessage, idempotency_key: str | None, delay: float
    ) -> tuple[str, asyncio.Future[None] | None]:
        """Enqueue, and return the message id with the write to await before acknowledging."""
        queue = self._queue(name)
        merged = queue.keys.get(idempotency_key) if idempotency_key is not None else None
        before = queue.messages[merged].available_at if merged is not None else None
        message_id = self.enqueue(name, message, idempotency_key, delay)
        msg = queue.messages[message_id]
        if merged is None:
            record: _Record = _Enqueued(
                message_id, name, message, msg.available_at, idempotency_key
            )
        elif msg.available_at != before:
            record = _Moved(message_id, msg.available_at)
        else:
            return message_id, self._unsaved.get(message_id)  # wait for the first one's write
        future = self._write(record)
        if merged is None:
            self._unsaved[message_id] = future
            future.add_done_callback(lambda _: self._unsaved.pop(message_id, None))
        return message_id, future

    def _take(
        self,
        queue: _Queue,
        now: datetime,
        lease_for: float,
        limit: int,
        accept: Accept | None = None,
    ) -> list[Lease]:
        leases = super()._take(queue, now, lease_for, limit, accept)
        for lease in leases:
            self._write_nowait(_Leased(lease.message_id, lease.attempt))
        return leases

    def ack(self, lease: Lease) -> None:
        super().ack(lease)
        self._write_nowait(_Acked(lease.message_id))

    def nack(self, lease: Lease, delay: float) -> None:
        super().nack(lease, delay)
        msg = self._queues[lease.queue].messages[lease.message_id]
        self._write_nowait(_Nacked(lease.message_id, msg.available_at))

    def drop(self, name: str, message_id: str) -> None:
        queue = self._queues.get(name)
        if queue is not None and message_id in queue.messages:
            super().drop(name, message_id)
            self._write_nowait(_Acked(message_id))

    def _write(self, record: _Record) -> asyncio.Future[None]:
        assert self._writer is not None, "the queue journal is not attached to a writer"
        self._compact_if_due()
        return self._writer.append(QUEUE_FILE, _encoder.encode(record) + b"\n")

    def _write_nowait(self, record: _Record) -> None:
        assert self._writer is not None, "the queue journal is not attached to a writer"
        self._compact_if_due()
        self._writer.append_nowait(QUEUE_FILE, _encoder.encode(record) + b"\n")

    def _compact_if_due(self) -> None:
        """Rewrite the journal once it is mostly lines about messages long gone.

        The snapshot already holds the effect of the line about to be written (every change
        is applied before it is journaled), and replaying that line again is harmless.
        """
        self._records += 1
        live = sum(len(q.messages) for q in self._queues.values())
        if self._records > _COMPACT_MIN_RECORDS and self._records > 4 * live:
            assert self._writer is not None
            # a failed rewrite also fails every later write: that is where callers hear of it
            self._writer.replace(QUEUE_FILE, self.snapshot()).add_done_callback(_observe)


def _observe(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
