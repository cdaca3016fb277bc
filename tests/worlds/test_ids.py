"""Ids: ``new_id`` is monotonic, its cached encodings equal the plain one, random bytes."""

from __future__ import annotations

import os
import random
import types

import pytest

from worldflow.worlds import _ids, new_id
from worldflow.worlds._ids import UlidSequence, encode_ulid, new_ulid, random_bytes

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _reference(ms: int, rand: int) -> str:
    """The ULID text computed the slow way, one character per 5 bits."""
    value = ((ms & ((1 << 48) - 1)) << 80) | (rand & ((1 << 80) - 1))
    return "".join(_ALPHABET[(value >> (5 * i)) & 0x1F] for i in range(25, -1, -1))


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + _ALPHABET.index(char)
    return value


def test_encode_ulid_matches_the_definition() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ms, rand = rng.getrandbits(48), rng.getrandbits(80)
        assert encode_ulid(ms, rand) == _reference(ms, rand)


def test_a_sequence_equals_encode_ulid_across_carries() -> None:
    rng = random.Random(8)
    for _ in range(20):
        ms = rng.getrandbits(48)
        sequence = UlidSequence(ms)
        base = rng.getrandbits(79)
        for n in [*range(1, 2100), (1 << 40) - (base & ((1 << 40) - 1))]:
            assert sequence.at(base + n) == encode_ulid(ms, base + n)


def test_a_new_milliseconds_head_equals_the_definition() -> None:
    # new_ulid's head (time + random part but its low 10 bits) keeps the time's high bits
    # from the last call: consecutive milliseconds, a jump, and a carry past 10 bits.
    rng = random.Random(9)
    times = [1_700_000_000_000 + k for k in range(2100)] + [rng.getrandbits(48) for _ in range(500)]
    for ms in times:
        rand = rng.getrandbits(79)
        assert _ids._head_of(ms, rand) == _reference(ms, rand)[:24]


def test_new_ids_increase_within_a_millisecond_and_across_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [new_ulid() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # A random part just below a 10-bit and a 40-bit boundary, in a millisecond that lasts.
    frozen = types.SimpleNamespace(time_ns=lambda: 1_700_000_000_000 * 1_000_000)
    monkeypatch.setattr(_ids, "time", frozen)
    for start in ((1 << 10) - 2, (1 << 40) - 2):
        monkeypatch.setattr(_ids, "_last_ms", 1_700_000_000_000)
        monkeypatch.setattr(_ids, "_last_rand", start)
        monkeypatch.setattr(_ids, "_head", -1)
        minted = [new_ulid() for _ in range(4)]
        assert minted == sorted(minted)
        assert [_decode(u) & ((1 << 80) - 1) for u in minted] == [start + k for k in range(1, 5)]
        assert [_decode(u) >> 80 for u in minted] == [1_700_000_000_000] * 4


def test_new_id_has_the_prefix_and_26_characters() -> None:
    prefix, _, ulid = new_id("evnt").partition("_")
    assert prefix == "evnt"
    assert len(ulid) == 26
    assert set(ulid) <= set(_ALPHABET)


def test_random_bytes_are_fresh_across_blocks() -> None:
    chunks = [random_bytes(10) for _ in range(2000)]  # several blocks of the pool
    assert all(len(c) == 10 for c in chunks)
    assert len(set(chunks)) == len(chunks)
    assert len(random_bytes(10_000)) == 10_000  # more than a block at once


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_reuse_the_parents_random_bytes() -> None:
    random_bytes(1)  # the pool holds unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, random_bytes(32))
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_bytes(32)
