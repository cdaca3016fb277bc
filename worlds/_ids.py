"""Prefixed ULIDs: ``wrun_``, ``step_``, ``hook_``, ``wait_``, ``evnt_`` + 26 Crockford chars.

A ULID is 48 bits of millisecond time then 80 random bits, so ids sort by creation time.
:func:`new_id` is monotonic within a process: two ids minted in the same millisecond still
sort in minting order (the random part of the first one of the millisecond is incremented).

:func:`id_problem` is the one rule every id a caller chooses must follow (run ids, hook
tokens, correlation ids): every world applies it at the append boundary, the engine's verbs
at the call, and an HTTP API to its path parameters, so an id one of them accepts is never
refused by another.

Ids are minted for every stored event, so this is a hot path: the first 24 characters are
encoded once per millisecond (or when the increment carries past the low 10 bits), and an id
is those plus one lookup for its last two characters.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Final

__all__ = [
    "MAX_ID_LENGTH",
    "PREFIXES",
    "UlidSequence",
    "check_id",
    "encode_ulid",
    "id_problem",
    "new_id",
    "new_ulid",
    "random_bytes",
]

MAX_ID_LENGTH: Final = 255
"""The longest id (in characters) a world stores: it must fit a file name and a URL."""

# Control characters (C0, DEL, C1) and lone surrogates (which no encoding can store).
_BAD_ID_CHARS: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as an id, or ``None`` if it is a valid one.

    An id is a ``str`` of 1 to :data:`MAX_ID_LENGTH` characters with no control characters
    and no lone surrogates. Anything else printable is allowed (``"order/42 é"`` is fine).
    """
    if not isinstance(value, str):
        return f"must be a str, not {type(value).__name__} ({value!r:.40})"
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
    bad = _BAD_ID_CHARS.search(value)
    if bad is not None:
        return (
            f"holds the character {bad.group()!r} at position {bad.start()}; ids take no "
            "control characters and no lone surrogates"
        )
    return None


def check_id(value: object, what: str) -> str:
    """Return ``value`` if it is a valid id (see :func:`id_problem`), else raise
    :class:`ValueError` (or :class:`TypeError` for a non-str) naming ``what``."""
    problem = id_problem(value)
    if problem is None:
        return value  # type: ignore[return-value]  # a str, checked above
    error = TypeError if not isinstance(value, str) else ValueError
    raise error(f"{what} {problem}")


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# One lookup per 10 bits (two characters).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_MASK40 = (1 << 40) - 1

PREFIXES = frozenset({"wrun", "step", "hook", "wait", "evnt", "strm", "msg"})

_lock = threading.Lock()
# Random bytes are read from the OS in blocks: os.urandom() releases the GIL, and with
# another thread busy (the file world's writer) taking it back cost a thread switch, which
# made minting an id in a new millisecond cost ~100x its own work.
_POOL_SIZE = 4096
_pool = b""
_pool_at = 0


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS's secure random source (read ahead in blocks)."""
    global _pool, _pool_at
    with _lock:
        if _pool_at + count > len(_pool):
            _pool = os.urandom(max(_POOL_SIZE, count))
            _pool_at = 0
        chunk = _pool[_pool_at : _pool_at + count]
        _pool_at += count
    return chunk


def _forget_pool() -> None:
    """After a fork the child must not reuse the parent's unread bytes."""
    global _pool, _pool_at, _lock, _last_ms
    _lock = threading.Lock()
    _pool, _pool_at = b"", 0
    _last_ms = -1  # and draws a fresh random part rather than counting on from the parent's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
_last_ms = -1
_last_rand = 0
_head = -1  # _last_rand without its low 10 bits
_head_text = ""  # the first 24 characters of the last ULID (time and _head)


def _encode_time(ms: int) -> str:
    """The 10 characters of a 48-bit millisecond time (two leading pad bits)."""
    p = _PAIRS
    return (
        _ALPHABET[(ms >> 45) & 0x7]
        + p[(ms >> 35) & 0x3FF]
        + p[(ms >> 25) & 0x3FF]
        + p[(ms >> 15) & 0x3FF]
        + p[(ms >> 5) & 0x3FF]
        + _ALPHABET[ms & 0x1F]
    )


def _encode_40(bits: int) -> str:
    """The 8 characters of 40 bits."""
    p = _PAIRS
    return p[bits >> 30] + p[(bits >> 20) & 0x3FF] + p[(bits >> 10) & 0x3FF] + p[bits & 0x3FF]


def encode_ulid(ms: int, rand: int) -> str:
    """Encode a 48-bit millisecond time and an 80-bit random part as a 26-char ULID."""
    ms &= 0xFFFFFFFFFFFF
    rand &= (1 << 80) - 1
    return _encode_time(ms) + _encode_40(rand >> 40) + _encode_40(rand & _MASK40)


class UlidSequence:
    """ULIDs of one millisecond time with given random parts, cheap when consecutive.

    ``at(rand)`` equals ``encode_ulid(ms, rand)``; the first 24 characters are re-encoded
    only when ``rand`` leaves the block of 1024 the previous call was in.
    """

    __slots__ = ("_head", "_head_text", "_ms")

    def __init__(self, ms: int) -> None:
        self._ms = ms
        self._head = -1
        self._head_text = ""

    def at(self, rand: int) -> str:
        """The ULID of this time and the random part ``rand`` (0 <= rand < 2**80)."""
        head = rand >> 10
        if head != self._head:
            self._head = head
            self._head_text = encode_ulid(self._ms, rand)[:24]
        return self._head_text + _PAIRS[rand & 0x3FF]


def new_ulid() -> str:
    """A fresh ULID, strictly greater than the previous one minted by this process."""
    global _last_ms, _last_rand, _head, _head_text
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            rand = _last_rand + 1
        else:
            _last_ms = ms
            _head = -1
            rand = int.from_bytes(_random10(), "big") >> 1  # headroom for increments
        _last_rand = rand
        head = rand >> 10
        if head != _head:  # a new millisecond, or the increment carried past 10 bits
            _head = head
            _head_text = _head_of(_last_ms, rand)
        return _head_text + _PAIRS[rand & 0x3FF]


_time_high = -1  # the last time's ms >> 10, and the 8 characters that encode it
_time_high_text = ""


def _head_of(ms: int, rand: int) -> str:
    """``encode_ulid(ms, rand)[:24]`` (callers hold ``_lock``), re-encoding only the low 10
    bits of the time when its high bits are the last call's (a new millisecond usually)."""
    global _time_high, _time_high_text
    ms &= 0xFFFFFFFFFFFF
    high = ms >> 10
    if high != _time_high:
        _time_high = high
        _time_high_text = _encode_time(ms)[:8]
    p = _PAIRS
    return (
        _time_high_text
        + p[ms & 0x3FF]
        + _encode_40(rand >> 40)
        + p[(rand >> 30) & 0x3FF]
        + p[(rand >> 20) & 0x3FF]
        + p[(rand >> 10) & 0x3FF]
    )


def _random10() -> bytes:
    # random_bytes(10) without taking the lock again (new_ulid holds it)
    global _pool, _pool_at
    if _pool_at + 10 > len(_pool):
        _pool = os.urandom(_POOL_SIZE)
        _pool_at = 0
    chunk = _pool[_pool_at : _pool_at + 10]
    _pool_at += 10
    return chunk


def new_id(prefix: str) -> str:
    """A fresh id such as ``wrun_01J9...``; ``prefix`` is one of :data:`PREFIXES`."""
    return f"{prefix}_{new_ulid()}"
