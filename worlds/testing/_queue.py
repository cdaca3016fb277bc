"""Conformance tests of the queue (idempotency, delays, leases) and of streams (live tail).

Time-dependent checks use leases and delays of a few hundredths of a second and wait for them
with the world's own blocking ``lease(wait=)``; only a lease that must expire *unobserved* is
waited out with a short real sleep.
"""

from __future__ import annotations

import asyncio

import pytest

from worldflow.errors import (
    EntityConflictError,
    LeaseLostError,
    RunNotFoundError,
    StreamNotFoundError,
)
from worldflow.worlds._events import RunCompleted
from worldflow.worlds._protocol import World
from worldflow.worlds._records import NULL, QueueMessage, StreamChunk, StreamInfo
from worldflow.worlds.testing._base import SuiteBase, new_run

__all__ = ["QueueConformance", "StreamConformance"]


def msg(run_id: str = "wrun_x", step_id: str | None = None) -> QueueMessage:
    """A queue message about ``run_id`` (a step message when ``step_id`` is given)."""
    if step_id is None:
        return QueueMessage(kind="run", run_id=run_id)
    return QueueMessage(kind="step", run_id=run_id, step_id=step_id)


class QueueConformance(SuiteBase):
    """``enqueue`` / ``lease`` / ``ack`` / ``nack`` / ``extend``."""

    async def test_enqueue_lease_ack(self, world: World) -> None:
        message_id = await world.enqueue("runs", msg("wrun_1"))
        [lease] = await world.lease("runs", lease_for=30)
        assert lease.message_id == message_id
        assert lease.message == msg("wrun_1")
        assert (lease.queue, lease.attempt) == ("runs", 1)
        assert lease.lease_id
        assert await world.lease("runs", lease_for=30) == []  # leased: not delivered twice
        await world.ack(lease)
        with pytest.raises(LeaseLostError):
            await world.ack(lease)
        assert await world.lease("runs", lease_for=30) == []

    async def test_queues_are_separate(self, world: World) -> None:
        await world.enqueue("a", msg("wrun_a"))
        await world.enqueue("b", msg("wrun_b"))
        [lease] = await world.lease("b", lease_for=30, max_messages=5)
        assert lease.message.run_id == "wrun_b"
        assert lease.queue == "b"

    async def test_max_messages(self, world: World) -> None:
        ids = {await world.enqueue("q", msg(f"wrun_{n}")) for n in range(5)}
        first = await world.lease("q", lease_for=30, max_messages=3)
        second = await world.lease("q", lease_for=30, max_messages=3)
        assert (len(first), len(second)) == (3, 2)
        assert {x.message_id for x in first + second} == ids
        assert await world.lease("q", lease_for=30, max_messages=3) == []

    async def test_idempotency_key_dedupes_undelivered_messages(self, world: World) -> None:
        first = await world.enqueue("q", msg("wrun_1"), idempotency_key="run:1")
        second = await world.enqueue("q", msg("wrun_1"), idempotency_key="run:1")
        assert first == second
        other_queue = await world.enqueue("p", msg("wrun_1"), idempotency_key="run:1")
        assert other_queue != first  # keys are per queue
        [lease] = await world.lease("q", lease_for=30, max_messages=10)
        assert lease.message_id == first
        # Once delivered, the key is free: a new message is added while the first is leased.
        third = await world.enqueue("q", msg("wrun_1"), idempotency_key="run:1")
        assert third != first
        [again] = await world.lease("q", lease_for=30, max_messages=10)
        assert again.message_id == third

    async def test_idempotency_key_keeps_the_earlier_due_time(self, world: World) -> None:
        late = await world.enqueue("q", msg("wrun_1"), idempotency_key="k1", delay=60)
        assert await world.enqueue("q", msg("wrun_1"), idempotency_key="k1") == late
        soon = await world.enqueue("q", msg("wrun_2"), idempotency_key="k2")
        assert await world.enqueue("q", msg("wrun_2"), idempotency_key="k2", delay=60) == soon
        leases = await world.lease("q", lease_for=30, max_messages=10)
        assert sorted(x.message_id for x in leases) == sorted([late, soon])

    async def test_delay(self, world: World) -> None:
        message_id = await world.enqueue("q", msg(), delay=0.05)
        assert await world.lease("q", lease_for=30) == []  # not due yet
        async with asyncio.timeout(5):
            [lease] = await world.lease("q", lease_for=30, wait=5)  # blocks until due
        assert lease.message_id == message_id

    async def test_due_messages_come_before_delayed_ones(self, world: World) -> None:
        await world.enqueue("q", msg("wrun_later"), delay=60)
        await world.enqueue("q", msg("wrun_now"))
        leases = await world.lease("q", lease_for=30, max_messages=5)
        assert [x.message.run_id for x in leases] == ["wrun_now"]

    async def test_lease_wait_wakes_on_enqueue(self, world: World) -> None:
        waiter = asyncio.ensure_future(world.lease("q", lease_for=30, wait=10))
        await asyncio.sleep(0)
        assert not waiter.done()
        await world.enqueue("q", msg())
        async with asyncio.timeout(5):
            [lease] = await waiter
        assert lease.attempt == 1

    async def test_lease_wait_times_out_empty(self, world: World) -> None:
        async with asyncio.timeout(5):
            assert await world.lease("q", lease_for=30, wait=0.05) == []

    async def test_expired_lease_redelivers_with_the_next_attempt(self, world: World) -> None:
        message_id = await world.enqueue("q", msg())
        [first] = await world.lease("q", lease_for=0.05)
        async with asyncio.timeout(5):
            [second] = await world.lease("q", lease_for=30, wait=5)  # blocks until expiry
        assert second.message_id == message_id
        assert second.attempt == 2
        assert second.lease_id != first.lease_id
        with pytest.raises(LeaseLostError):
            await world.ack(first)
        with pytest.raises(LeaseLostError):
            await world.nack(first)
        with pytest.raises(LeaseLostError):
            await world.extend(first, lease_for=30)
        await world.ack(second)
        assert await world.lease("q", lease_for=30) == []

    async def test_ack_of_an_expired_lease_is_refused(self, world: World) -> None:
        await world.enqueue("q", msg())
        [lease] = await world.lease("q", lease_for=0.02)
        await asyncio.sleep(0.1)  # let the lease expire with nobody taking the message
        with pytest.raises(LeaseLostError):
            await world.ack(lease)
        [again] = await world.lease("q", lease_for=30)  # it is still there, delivered again
        assert again.attempt == 2

    async def test_nack_gives_the_message_back(self, world: World) -> None:
        message_id = await world.enqueue("q", msg())
        [first] = await world.lease("q", lease_for=30)
        await world.nack(first)
        [second] = await world.lease("q", lease_for=30)
        assert (second.message_id, second.attempt) == (message_id, 2)
        with pytest.raises(LeaseLostError):
            await world.ack(first)
        await world.nack(second, delay=0.05)
        assert await world.lease("q", lease_for=30) == []  # not before the delay
        async with asyncio.timeout(5):
            [third] = await world.lease("q", lease_for=30, wait=5)
        assert (third.message_id, third.attempt) == (message_id, 3)
        await world.ack(third)

    async def test_extend_keeps_the_lease(self, world: World) -> None:
        await world.enqueue("q", msg())
        [lease] = await world.lease("q", lease_for=0.05)
        extended = await world.extend(lease, lease_for=30)
        assert extended.expires_at > lease.expires_at
        assert (extended.lease_id, extended.message_id) == (lease.lease_id, lease.message_id)
        # Past the original expiry the message is still ours: nobody else gets it.
        assert await world.lease("q", lease_for=30, wait=0.1) == []
        await world.ack(extended)


class StreamConformance(SuiteBase):
    """``write_stream`` / ``close_stream`` / ``read_stream`` / ``list_streams``."""

    async def test_write_read_and_list(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        assert await world.write_stream(r, "out", [b"a", b"b"]) == 2
        assert await world.write_stream(r, "out", [b"c"]) == 3
        assert await world.write_stream(r, "log", []) == 0
        chunks = [c async for c in world.read_stream(r, "out", follow=False)]
        assert chunks == [StreamChunk(index=i, data=d) for i, d in enumerate([b"a", b"b", b"c"])]
        tail = [c.index async for c in world.read_stream(r, "out", start=1, follow=False)]
        assert tail == [1, 2]
        infos = sorted(await world.list_streams(r), key=lambda s: s.name)
        assert infos == [
            StreamInfo(run_id=r, name="log", length=0, closed=False),
            StreamInfo(run_id=r, name="out", length=3, closed=False),
        ]
        other = await new_run(world, started=True)
        assert await world.list_streams(other.run_id) == []
        with pytest.raises(StreamNotFoundError):
            await anext(aiter(world.read_stream(other.run_id, "out", follow=False)))

    async def test_close(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        await world.write_stream(r, "out", [b"a"])
        await world.close_stream(r, "out")
        await world.close_stream(r, "out")  # idempotent
        with pytest.raises(EntityConflictError):
            await world.write_stream(r, "out", [b"b"])
        chunks = [c.data async for c in world.read_stream(r, "out")]  # follows, ends at close
        assert chunks == [b"a"]
        await world.close_stream(r, "empty")
        assert [c async for c in world.read_stream(r, "empty")] == []
        infos = {s.name: s for s in await world.list_streams(r)}
        assert (infos["out"].length, infos["out"].closed) == (1, True)
        assert (infos["empty"].length, infos["empty"].closed) == (0, True)

    async def test_live_tail_follows_a_writer_until_close(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        received: asyncio.Queue[StreamChunk] = asyncio.Queue()

        async def reader() -> list[bytes]:
            out = []
            async for chunk in world.read_stream(r, "out"):  # the stream does not exist yet
                out.append(chunk.data)
                received.put_nowait(chunk)
            return out

        task = asyncio.ensure_future(reader())
        async with asyncio.timeout(5):
            for n in range(5):
                await world.write_stream(r, "out", [f"c{n}".encode()])
                chunk = await received.get()  # the reader saw it live, before the next write
                assert (chunk.index, chunk.data) == (n, f"c{n}".encode())
            await world.write_stream(r, "out", [b"x", b"y"])
            assert [(await received.get()).index for _ in range(2)] == [5, 6]
            assert not task.done()
            await world.close_stream(r, "out")
            assert await task == [b"c0", b"c1", b"c2", b"c3", b"c4", b"x", b"y"]

    async def test_follow_from_beyond_the_end(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        await world.write_stream(r, "out", [b"0"])
        task = asyncio.ensure_future(
            _drain(world, r, "out", start=2)  # waits for index 2
        )
        await world.write_stream(r, "out", [b"1", b"2", b"3"])
        await world.close_stream(r, "out")
        async with asyncio.timeout(5):
            assert await task == [(2, b"2"), (3, b"3")]

    async def test_streams_are_separate_per_run_and_name(self, world: World) -> None:
        a = await new_run(world, started=True)
        b = await new_run(world, started=True)
        await world.write_stream(a.run_id, "out", [b"a"])
        await world.write_stream(b.run_id, "out", [b"b"])
        await world.write_stream(a.run_id, "err", [b"e"])
        for run_id, name, want in [
            (a.run_id, "out", [b"a"]),
            (b.run_id, "out", [b"b"]),
            (a.run_id, "err", [b"e"]),
        ]:
            got = [c.data async for c in world.read_stream(run_id, name, follow=False)]
            assert got == want

    async def test_streams_of_a_finished_run_stay_readable(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        await world.write_stream(r, "out", [b"a"])
        await world.close_stream(r, "out")
        await world.append(r, [RunCompleted(run_id=r, output=NULL)])
        assert [c.data async for c in world.read_stream(r, "out")] == [b"a"]
        with pytest.raises(RunNotFoundError):
            await world.write_stream("wrun_nope", "out", [b"x"])


async def _drain(world: World, run_id: str, name: str, *, start: int) -> list[tuple[int, bytes]]:
    return [(c.index, c.data) async for c in world.read_stream(run_id, name, start=start)]
