"""The memory world's queues: one heap of due times per queue, leases that expire.

Each message sits in its queue's heap at the time it next becomes deliverable: its due time
while it waits, its lease expiry while it is leased (an expired lease makes it deliverable
again). Changing that time pushes a new heap entry and bumps the message's ``version``; stale
entries are skipped when popped and compacted away when they pile up. Taking the next due
message is O(log n), whatever the queue holds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from worldflow.errors import InvalidEventError, LeaseLostError, WorldError
from worldflow.worlds._clock import Clock
from worldflow.worlds._ids import new_id
from worldflow.worlds._records import Lease, QueueMessage
from worldflow.worlds._wakeups import Signal, wait_for_event

__all__ = ["Accept", "MemoryQueues"]

Accept = Callable[[QueueMessage], bool]
"""Whether a consumer takes a message (its workflows, its engine id); see ``Queue.lease``."""


@dataclass(slots=True, eq=False)
class _Message:
    message_id: str
    queue: str
    message: QueueMessage
    available_at: datetime  # due time, or lease expiry while leased
    key: str | None = None  # idempotency key, held while undelivered
    attempt: int = 0  # deliveries so far
    lease_id: str | None = None
    version: int = 0


@dataclass(slots=True, eq=False)
class _Queue:
    messages: dict[str, _Message] = field(default_factory=dict)
    heap: list[tuple[datetime, int, str, int]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> message id
    changed: Signal = field(default_factory=Signal)


class MemoryQueues:
    """Named queues with idempotency keys, delays and expiring leases.

    ``on_message`` / ``on_gone`` let the world index messages by run (for purge).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        on_message: Callable[[str, str, str], None],
        on_gone: Callable[[str, str, str], None],
    ) -> None:
        self._clock = clock
        self._queues: dict[str, _Queue] = {}
        self._order = itertools.count()  # FIFO among messages due at the same time
        self._on_message = on_message
        self._on_gone = on_gone
        self._closed = False

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _schedule(self, queue: _Queue, msg: _Message, at: datetime) -> None:
        msg.available_at = at
        msg.version += 1
        heapq.heappush(queue.heap, (at, next(self._order), msg.message_id, msg.version))
        if len(queue.heap) > 64 and len(queue.heap) > 4 * len(queue.messages):
            queue.heap = [
                (m.available_at, next(self._order), m.message_id, m.version)
                for m in queue.messages.values()
            ]
            heapq.heapify(queue.heap)

    def enqueue(
        self, name: str, message: QueueMessage, idempotency_key: str | None, delay: float
    ) -> str:
        """Add (or, by idempotency key, merge) a message; see ``Queue.enqueue``."""
        if delay != delay:  # NaN would poison the heap's ordering
            raise InvalidEventError("enqueue: `delay` must be a number of seconds, not NaN")
        queue = self._queue(name)
        due = self._clock.now() + timedelta(seconds=max(0.0, delay))
        if idempotency_key is not None:
            existing_id = queue.keys.get(idempotency_key)
            if existing_id is not None:
                existing = queue.messages[existing_id]
                if due < existing.available_at:
                    self._schedule(queue, existing, due)
                    queue.changed.fire()
                return existing_id
        msg = _Message(
            message_id=new_id("msg"),
            queue=name,
            message=message,
            available_at=due,
            key=idempotency_key,
        )
        queue.messages[msg.message_id] = msg
        if idempotency_key is not None:
            queue.keys[idempotency_key] = msg.message_id
        self._schedule(queue, msg, due)
        self._on_message(message.run_id, name, msg.message_id)
        queue.changed.fire()
        return msg.message_id

    def _take(
        self,
        queue: _Queue,
        now: datetime,
        lease_for: float,
        limit: int,
        accept: Accept | None = None,
    ) -> list[Lease]:
        leases: list[Lease] = []
        heap = queue.heap
        skipped: list[tuple[datetime, int, str, int]] = []
        while heap and len(leases) < limit and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            _, _, message_id, version = entry
            msg = queue.messages.get(message_id)
            if msg is None or msg.version != version:
                continue  # acked, purged, or rescheduled since this entry was pushed
            if accept is not None and not accept(msg.message):
                # For another consumer (another workflow, another engine): it keeps its
                # place. Only due messages are looked at, so a consumer that serves every
                # workflow (one engine) never skips any.
                skipped.append(entry)
                continue
            if msg.key is not None:
                if queue.keys.get(msg.key) == message_id:
                    del queue.keys[msg.key]
                msg.key = None
            msg.attempt += 1
            msg.lease_id = new_id("msg")
            expires_at = now + timedelta(seconds=lease_for)
            self._schedule(queue, msg, expires_at)
            leases.append(
                Lease(
                    lease_id=msg.lease_id,
                    message_id=message_id,
                    queue=msg.queue,
                    message=msg.message,
                    attempt=msg.attempt,
                    expires_at=expires_at,
                )
            )
        for entry in skipped:
            heapq.heappush(heap, entry)
        return leases

    def _next_time(self, queue: _Queue) -> datetime | None:
        heap = queue.heap
        while heap:
            _, _, message_id, version = heap[0]
            msg = queue.messages.get(message_id)
            if msg is not None and msg.version == version:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    async def lease(
        self,
        name: str,
        lease_for: float,
        max_messages: int,
        wait: float,
        accept: Accept | None = None,
    ) -> list[Lease]:
        """Take due messages, waiting up to ``wait`` seconds; see ``Queue.lease``."""
        if not lease_for > 0:
            raise InvalidEventError(f"lease: `lease_for` must be > 0 seconds, got {lease_for}")
        if max_messages < 1:
            raise InvalidEventError(f"lease: `max_messages` must be >= 1, got {max_messages}")
        queue = self._queue(name)
        clock = self._clock
        deadline = clock.now() + timedelta(seconds=max(0.0, wait))
        while True:
            if self._closed:
                raise WorldError("the world was closed while lease() was waiting")
            changed = queue.changed.waiter()
            now = clock.now()
            leases = self._take(queue, now, lease_for, max_messages, accept)
            if leases or now >= deadline:
                return leases
            until = deadline
            next_time = self._next_time(queue)
            if next_time is not None and next_time > now and next_time < until:
                until = next_time  # (a due message for another consumer: wait for a change)
            await wait_for_event(changed, (until - now).total_seconds(), clock)

    def _held(self, lease: Lease) -> tuple[_Queue, _Message]:
        queue = self._queues.get(lease.queue)
        msg = queue.messages.get(lease.message_id) if queue else None
        if queue is None or msg is None or msg.lease_id != lease.lease_id:
            raise LeaseLostError(
                f"lease {lease.lease_id!r} on message {lease.message_id!r} was taken over or "
                "its message is gone"
            )
        if self._clock.now() >= msg.available_at:
            raise LeaseLostError(
                f"lease {lease.lease_id!r} on message {lease.message_id!r} expired at "
                f"{msg.available_at.isoformat()}; the message will be delivered again"
            )
        return queue, msg

    def ack(self, lease: Lease) -> None:
        """Remove a leased message."""
        queue, msg = self._held(lease)
        del queue.messages[msg.message_id]
        self._on_gone(msg.message.run_id, msg.queue, msg.message_id)

    def nack(self, lease: Lease, delay: float) -> None:
        """Give a leased message back, deliverable after ``delay`` seconds."""
        queue, msg = self._held(lease)
        msg.lease_id = None
        self._schedule(queue, msg, self._clock.now() + timedelta(seconds=max(0.0, delay)))
        queue.changed.fire()

    def extend(self, lease: Lease, lease_for: float) -> Lease:
        """Push a lease's expiry to ``lease_for`` seconds from now."""
        if not lease_for > 0:
            raise InvalidEventError(f"extend: `lease_for` must be > 0 seconds, got {lease_for}")
        queue, msg = self._held(lease)
        expires_at = self._clock.now() + timedelta(seconds=lease_for)
        self._schedule(queue, msg, expires_at)
        return Lease(
            lease_id=lease.lease_id,
            message_id=lease.message_id,
            queue=lease.queue,
            message=lease.message,
            attempt=lease.attempt,
            expires_at=expires_at,
        )

    def drop(self, name: str, message_id: str) -> None:
        """Remove a message whatever its state (purge); its heap entries go stale."""
        queue = self._queues.get(name)
        if queue is None:
            return
        msg = queue.messages.pop(message_id, None)
        if msg is not None and msg.key is not None and queue.keys.get(msg.key) == message_id:
            del queue.keys[msg.key]

    def close(self) -> None:
        """Wake every waiting lease; they raise ``WorldError``."""
        self._closed = True
        for queue in self._queues.values():
            queue.changed.fire()
