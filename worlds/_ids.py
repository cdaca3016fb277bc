"""Prefixed ULIDs: ``wrun_``, ``step_``, ``hook_``, ``wait_``, ``evnt_`` + 26 Crockford chars.

A ULID is 48 bits of millisecond time then 80 random bits, so ids sort by creation time.
:func:`new_id` is monotonic within a process: two ids minted in the same millisecond still
sort in minting order.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["PREFIXES", "encode_ulid", "new_id", "new_ulid"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# One lookup per 10 bits: 1 + 12 pairs + 1 = 26 characters for the 128 bits.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]

PREFIXES = frozenset({"wrun", "step", "hook", "wait", "evnt", "strm", "msg"})

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def encode_ulid(ms: int, rand: int) -> str:
    """Encode a 48-bit millisecond time and an 80-bit random part as a 26-char ULID."""
    value = ((ms & 0xFFFFFFFFFFFF) << 80) | (rand & ((1 << 80) - 1))
    pairs = _PAIRS
    out = [_ALPHABET[(value >> 125) & 0x1F]]
    out.extend(pairs[(value >> shift) & 0x3FF] for shift in range(115, 4, -10))
    out.append(_ALPHABET[value & 0x1F])
    return "".join(out)


def new_ulid() -> str:
    """A fresh ULID, strictly greater than the previous one minted by this process."""
    global _last_ms, _last_rand
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last_ms, _last_rand = ms, rand
    return encode_ulid(ms, rand)


def new_id(prefix: str) -> str:
    """A fresh id such as ``wrun_01J9...``; ``prefix`` is one of :data:`PREFIXES`."""
    return f"{prefix}_{new_ulid()}"
