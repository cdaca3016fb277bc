"""A world that opens while another instance is alone: nothing written silently is left to
the newcomer's poll.

An instance alone on the database sends no NOTIFY (nobody would hear it). A newcomer says
hello as soon as it listens, but the instance that was alone hears it a little later, and
what it wrote in between was not announced. So it answers the hello with a catch-up that
makes every listener resync, and a statement it decided silent that ends after the hello
announces its news then. Here the safety polls and health checks are a minute apart, and
the hello is held back on its way to the instance that was alone (``HeldHellos``), so a
waiter that wakes within the test's bound was woken by a notification, never by a poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.worlds import postgres_db
from tests.worlds.test_postgres_world import admin, eventually, message, started_run
from worldflow.worlds import NULL, RunCompleted, open_world
from worldflow.worlds._postgres import PostgresWorld
from worldflow.worlds._postgres import notify as pg_notify
from worldflow.worlds._postgres import queue as pg_queue
from worldflow.worlds._postgres import world as pg_world

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
]

_BOUND = 10.0  # seconds: far below the minute a poll would take, far above a NOTIFY


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_db.fresh_schema() as schema_url:
        yield schema_url


@pytest.fixture(autouse=True)
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits re-read, and listeners look for peers, only every minute."""
    monkeypatch.setattr(pg_world, "_POLL", 60.0)
    monkeypatch.setattr(pg_queue, "_POLL", 60.0)
    monkeypatch.setattr(pg_notify, "_HEALTH_EVERY", 60.0)


class HeldHellos:
    """Holds back hellos on their way to listeners while ``holding`` (installed before the
    worlds open: a listener's callback is bound when it starts listening)."""

    def __init__(self) -> None:
        self.holding = False
        self._held: list[tuple[Any, Callable[[], None]]] = []

    def wrap(self, real: Callable[..., None]) -> Callable[..., None]:
        def callback(listener: Any, conn: Any, pid: int, channel: str, payload: str) -> None:
            if self.holding and payload == pg_notify.HELLO:
                self._held.append((listener, lambda: real(listener, conn, pid, channel, payload)))
                return
            real(listener, conn, pid, channel, payload)

        return callback

    def reached(self, listener: Any) -> bool:
        """Whether a hello is held on its way to ``listener``."""
        return any(held is listener for held, _ in self._held)

    def release(self) -> None:
        self.holding = False
        held, self._held = self._held, []
        for _, deliver in held:
            deliver()


@pytest.fixture
def hellos(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldHellos]:
    held = HeldHellos()
    monkeypatch.setattr(pg_notify.Listener, "_callback", held.wrap(pg_notify.Listener._callback))
    yield held
    held.release()


async def alone(url: str) -> PostgresWorld:
    world = await open_world(url)
    assert isinstance(world, PostgresWorld)
    assert not world.listener.peers  # it looked when it opened: nobody else
    return world


async def newcomer(url: str, hellos: HeldHellos, lonely: PostgresWorld) -> PostgresWorld:
    """Open another world whose hello ``lonely`` has received but not yet heard."""
    hellos.holding = True
    world = await open_world(url)
    assert isinstance(world, PostgresWorld)
    await eventually(lambda: hellos.reached(lonely.listener))
    assert not lonely.listener.peers
    return world


async def test_an_end_written_silently_before_the_hello_is_caught_up(
    url: str, hellos: HeldHellos
) -> None:
    a = await alone(url)
    try:
        await started_run(a, "nrun_a")
        b = await newcomer(url, hellos, a)
        try:
            waiter = asyncio.ensure_future(b.wait_for_run("nrun_a", after_seq=2, terminal=True))
            await asyncio.sleep(0.1)  # B read the run: not ended
            await a.append("nrun_a", [RunCompleted(run_id="nrun_a", output=NULL)])  # silent
            await asyncio.sleep(0.2)
            assert not waiter.done()
            hellos.release()  # A hears the hello: it answers with a catch-up
            async with asyncio.timeout(_BOUND):
                assert await waiter == 3
            # A counts its catch-up once its NOTIFY statement returns: B may hear it first
            await eventually(lambda: a.listener.catch_ups_sent == 1)
            assert b.listener.resyncs == 1
            assert a.listener.peers
        finally:
            await b.aclose()
    finally:
        await a.aclose()


async def test_a_statement_decided_silent_that_ends_after_the_hello_tells_its_end(
    url: str, hellos: HeldHellos
) -> None:
    """The hello is heard, and its catch-up reaches B, while A's silent statement is in
    flight: B re-reads too early, so the statement's end must be announced when it commits."""
    a = await alone(url)
    try:
        await started_run(a, "nrun_b")
        b = await newcomer(url, hellos, a)
        try:
            waiter = asyncio.ensure_future(b.wait_for_run("nrun_b", after_seq=2, terminal=True))
            await asyncio.sleep(0.1)

            async def meanwhile(point: str, conn: Any) -> None:
                if point == "before":  # decided silent already
                    hellos.release()
                    await eventually(lambda: b.listener.resyncs == 1)

            a.set_fault(meanwhile)
            await a.append("nrun_b", [RunCompleted(run_id="nrun_b", output=NULL)])
            a.set_fault(None)
            async with asyncio.timeout(_BOUND):
                assert await waiter == 3
        finally:
            await b.aclose()
    finally:
        await a.aclose()


async def test_a_message_enqueued_silently_before_the_hello_is_caught_up(
    url: str, hellos: HeldHellos
) -> None:
    a = await alone(url)
    try:
        b = await newcomer(url, hellos, a)
        try:
            waiter = asyncio.ensure_future(b.lease("q", lease_for=30, wait=60))
            await asyncio.sleep(0.1)  # B found nothing due
            await a.enqueue("q", message(1))  # silent: A is alone as far as it knows
            await asyncio.sleep(0.2)
            assert not waiter.done()
            hellos.release()
            async with asyncio.timeout(_BOUND):
                [lease] = await waiter
            assert lease.message == message(1)
        finally:
            await b.aclose()
    finally:
        await a.aclose()


async def test_an_enqueue_decided_silent_that_ends_after_a_hello_notifies(url: str) -> None:
    a = await alone(url)
    b = await open_world(url)
    assert isinstance(b, PostgresWorld)
    try:
        await eventually(lambda: a.listener.peers)
        waiter = asyncio.ensure_future(b.lease("q", lease_for=30, wait=60))
        await asyncio.sleep(0.1)
        answers = iter([False])  # alone when it decided; B's hello heard by its end
        a._queues._wanted = lambda: next(answers, True)
        await a.enqueue("q", message(2))
        async with asyncio.timeout(_BOUND):
            [lease] = await waiter
        assert lease.message == message(2)
    finally:
        await b.aclose()
        await a.aclose()


async def test_alone_an_enqueue_sends_no_notify(url: str) -> None:
    a = await alone(url)
    heard: list[str] = []
    raw = await admin(url)  # not a world's session, so not a peer
    await raw.add_listener(f"{a.schema}_queue", lambda *args: heard.append(args[3]))
    try:
        await a.enqueue("q", message(3))
        await asyncio.sleep(0.3)
        assert heard == []
        b = await open_world(url)
        try:
            await eventually(lambda: a.listener.peers)
            await a.enqueue("q", message(4))
            await eventually(lambda: heard == ["q"])
        finally:
            await b.aclose()
    finally:
        await raw.close()
        await a.aclose()


async def test_a_hello_heard_while_looking_for_peers_keeps_the_flag(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look that began before the newcomer connected finds nobody; the hello that arrives
    during it (delivered when the look ends, on the same connection) must not be undone."""
    a = await alone(url)
    try:
        monkeypatch.setattr(
            pg_notify,
            "_PEERS_SQL",
            "SELECT false FROM pg_sleep(1) WHERE $1::text <> '' AND $2::int[] IS NOT NULL",
        )
        look = asyncio.ensure_future(a.listener.check_peers())
        await asyncio.sleep(0.1)
        b = await open_world(url)
        try:
            async with asyncio.timeout(_BOUND):
                assert await look
            assert a.listener.peers
        finally:
            await b.aclose()
    finally:
        await a.aclose()


async def test_a_listener_that_reconnects_alone_sends_a_catch_up(url: str) -> None:
    """While deaf, a hello may be missed: once listening again, a world that was alone tells
    any newcomer to re-read what it wrote silently."""
    a = await alone(url)
    heard: list[str] = []
    raw = await admin(url)
    await raw.add_listener(f"{a.schema}_log", lambda *args: heard.append(args[3]))
    try:
        assert await raw.fetchval(
            "SELECT pg_terminate_backend($1)", a.listener.connection.get_server_pid()
        )
        async with asyncio.timeout(_BOUND):
            await eventually(lambda: pg_notify.CATCH_UP in heard)
        assert a.listener.reconnects == 1
    finally:
        await raw.close()
        await a.aclose()


async def test_a_refused_catch_up_leaves_the_listener_supervising(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up the server refuses (here: a payload over NOTIFY's limit) costs the newcomer
    its poll, never the listener: it still reconnects when its connection dies."""
    monkeypatch.setattr(pg_notify, "CATCH_UP", "r" * 9000)
    a = await alone(url)
    b = await open_world(url)
    try:
        await eventually(lambda: a.listener.peers and not a.listener._catch_up)
        assert a.listener.catch_ups_sent == 0
        raw = await admin(url)
        try:
            pid = a.listener.connection.get_server_pid()
            assert await raw.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await raw.close()
        async with asyncio.timeout(_BOUND):
            await eventually(lambda: a.listener.reconnects == 1)
    finally:
        await b.aclose()
        await a.aclose()
