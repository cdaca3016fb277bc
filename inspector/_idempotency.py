"""Answers remembered by idempotency key, so a retried write is done once.

A client that lost the answer to a write (the connection dropped after the server committed)
sends it again with the same ``Idempotency-Key``; the server answers from here instead of
writing twice. A key seen while its first request is still running waits for that request's
answer. Keys are kept in memory for a bounded time (``IDEMPOTENCY_TTL`` of the wire module)
and number: they cover lost answers and retries while this server lives.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from worldflow.errors import InvalidEventError, WorldflowError

__all__ = ["Answer", "IdempotencyStore"]

DEFAULT_MAX_KEYS: Final = 100_000

Answer = tuple[int, bytes]
"""A remembered answer: HTTP status and JSON body."""

Fingerprint = tuple[str, str, int]
"""What the key was first used for: method, path and a hash of the body."""


@dataclass
class _Entry:
    fingerprint: Fingerprint
    answer: asyncio.Future[Answer]
    expires: float = field(default=0.0)


class IdempotencyStore:
    """Idempotency key → answer, for ``ttl`` seconds and at most ``max_keys`` keys.

    Refused writes are remembered too (a retried conflicting append is the same conflict);
    a request that failed for another reason (a bug, a cancelled handler) is forgotten, so a
    retry runs it again.
    """

    def __init__(self, *, ttl: float, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def answer(
        self, key: str, fingerprint: Fingerprint, compute: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        """The answer remembered for ``key``, else ``compute()``'s (remembered for next time).

        Raises:
            InvalidEventError: ``key`` was first used for another request.
            WorldflowError: the write was refused (now, or the first time).
        """
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry.answer.done() and entry.expires <= now:
            del self._entries[key]
            entry = None
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise InvalidEventError(
                    f"the Idempotency-Key {key!r} was used for another request "
                    f"({entry.fingerprint[0]} {entry.fingerprint[1]}): use a new key per write"
                )
            try:
                return await asyncio.shield(entry.answer)
            except WorldflowError as exc:
                raise copy.copy(exc) from None
            except _Forgotten:
                return await self.answer(key, fingerprint, compute)
        self._evict(now)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        entry = self._entries[key] = _Entry(fingerprint, future)
        try:
            answer = await compute()
        except WorldflowError as exc:
            entry.expires = time.monotonic() + self._ttl
            future.set_exception(copy.copy(exc))
            future.exception()  # retrieved: waiters re-raise their own copy
            raise
        except BaseException:
            self.forget(key)
            future.set_exception(_Forgotten())  # waiters run it again themselves
            future.exception()
            raise
        entry.expires = time.monotonic() + self._ttl
        future.set_result(answer)
        return answer

    def forget(self, key: str) -> None:
        """Drop ``key`` (its answer was not delivered and the write was undone)."""
        self._entries.pop(key, None)

    def _evict(self, now: float) -> None:
        # Entries are in insertion order, which is close to expiry order (one ttl for all).
        entries = self._entries
        while entries:
            key, oldest = next(iter(entries.items()))
            expired = oldest.answer.done() and oldest.expires <= now
            if not expired and len(entries) < self._max_keys:
                return
            del entries[key]


class _Forgotten(Exception):
    """The first request of a key failed without an answer; its waiters run it again."""
