"""What the PostgreSQL world sends per run: no statement it can do without.

A run driven and awaited in one process costs its appends, the engine's read of the ended
run (``Run.result()``) and its wrap-up's stream listing: no read to learn that the run
ended (this process committed the end, or is committing it), and no NOTIFY statement of its
own (the end's append statement carries the news the coalescing notifier had pending).
Each test raises the notifier's interval so that a flush could only come from a bug, never
from a slow machine.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.worlds import postgres_db
from tests.worlds.test_postgres_world import Pair, admin, eventually, started_run
from worldflow import Engine, step, workflow
from worldflow.worlds import NULL, EventRaised, QueueMessage, RunCompleted, open_world
from worldflow.worlds._postgres import PostgresWorld
from worldflow.worlds._postgres import notify as pg_notify
from worldflow.worlds._postgres import world as pg_world

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
]

_QUIET = 60.0  # the notifier's interval in these tests: it never flushes on its own


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_db.fresh_schema() as schema_url:
        yield schema_url


@pytest.fixture
async def pair(url: str) -> AsyncIterator[Pair]:
    async with postgres_db.two_worlds(url) as (a, b):
        # A heard B's hello (it notifies again) and answered with a catch-up (B resynced).
        await eventually(lambda: a.listener.peers and b.listener.resyncs == 1)
        for world in (a, b):
            world._notifier._interval = _QUIET
        yield a, b


class Heard:
    """Another session LISTENing on the world's log channel: the payloads it got."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.conn: Any = None
        self._more = asyncio.Event()

    def got(self, *args: Any) -> None:
        self.payloads.append(args[3])
        self._more.set()

    def items(self) -> list[str]:
        return [item for payload in self.payloads for item in payload.split(",")]

    async def until(self, item: str) -> None:
        async with asyncio.timeout(20):
            while item not in self.items():
                self._more.clear()
                await self._more.wait()


@pytest.fixture
async def heard(url: str, pair: Pair) -> AsyncIterator[Heard]:
    out = Heard()
    out.conn = await admin(url)
    await out.conn.add_listener(f"{pair[0].schema}_log", out.got)
    try:
        yield out
    finally:
        await out.conn.close()


async def queries(world: PostgresWorld) -> int:
    """The statements sent so far (asyncpg counts a statement with a callback it schedules
    when the statement ends: let those run first)."""
    await asyncio.sleep(0)
    return world.queries


async def test_the_end_carries_the_pending_news_in_one_notify(pair: Pair, heard: Heard) -> None:
    a, _ = pair
    await started_run(a, "srun_x")  # not urgent: pending in the notifier
    await started_run(a, "srun_y")
    before = await queries(a)
    await a.append("srun_x", [RunCompleted(run_id="srun_x", output=NULL)])
    assert await queries(a) - before == 1  # the append statement, nothing else
    await heard.until("srun_y:2")
    assert len(heard.payloads) == 1
    assert set(heard.items()) == {"srun_x:3", "t:srun_x", "s:srun_x", "srun_x:2", "srun_y:2"}
    assert a._notifier.flushes == 0


async def test_news_carried_by_a_refused_statement_goes_out_with_the_retry(
    pair: Pair, heard: Heard
) -> None:
    """B appends between A's read and A's statement: A's CAS misses and the batch is
    re-applied; the pending news the refused statement carried is sent by the next one."""
    a, b = pair
    await started_run(a, "srun_c")
    await started_run(a, "srun_other")  # its news is pending in A's notifier
    cut: list[str] = []

    async def interfere(point: str, conn: Any) -> None:
        if point == "before" and not cut:
            cut.append(point)
            await b.append("srun_c", [EventRaised(run_id="srun_c", name="between")])

    a.set_fault(interfere)
    await a.append("srun_c", [RunCompleted(run_id="srun_c", output=NULL)])
    a.set_fault(None)
    assert a.append_stats.cas_misses == 1
    await heard.until("t:srun_c")
    await heard.until("srun_other:2")
    assert a._notifier.flushes == 0


async def test_an_end_committed_here_wakes_its_waiter_without_a_read(pair: Pair) -> None:
    """The end's NOTIFY echo reaches this process's listener before the statement's reply
    (held back here): the waiter waits for the commit instead of reading the run; and a
    waiter that starts while the end is in flight waits for it too."""
    a, _ = pair
    await started_run(a, "srun_e")
    first = asyncio.ensure_future(a.wait_for_run("srun_e", after_seq=0, terminal=True))
    await asyncio.sleep(0.05)
    late: list[asyncio.Future[int]] = []

    async def hold(point: str, conn: Any) -> None:
        if point == "before":  # the overlay is at the end already, the database not yet
            late.append(asyncio.ensure_future(a.wait_for_run("srun_e", after_seq=0, terminal=True)))
            await asyncio.sleep(0.05)
        else:  # committed, and its NOTIFY is heard before the reply is read
            await asyncio.sleep(0.3)

    a.set_fault(hold)
    before = await queries(a)
    await a.append("srun_e", [RunCompleted(run_id="srun_e", output=NULL)])
    a.set_fault(None)
    async with asyncio.timeout(20):
        assert await first == 3
        assert await late[0] == 3
    assert await queries(a) - before == 1  # the append; no read of where the run is


@step
async def plus_one(x: int) -> int:
    return x + 1


@workflow
async def one_step(x: int) -> int:
    return await plus_one(x)


async def test_a_one_step_run_costs_its_appends_and_two_reads(url: str) -> None:
    world = await open_world(url)
    assert isinstance(world, PostgresWorld)
    world._notifier._interval = _QUIET
    sent: list[str] = []
    pool = world._pool
    count = pool._count

    def logged(record: Any) -> None:
        count(record)
        sent.append(record.query)

    pool._count = logged  # type: ignore[method-assign,assignment]
    for conn in pool._idle:
        conn.remove_query_logger(count)
        conn.add_query_logger(logged)
    try:
        async with Engine(world=world, workflows=[one_step]) as engine:
            run = await engine.start(one_step, 0, run_id="srun_warm")  # prepares statements
            assert await run.result(timeout=20) == 1
            await asyncio.sleep(0.1)  # the wrap-up of the warm-up run
            runs = 10
            sent.clear()
            statements = world.append_stats.statements
            for i in range(runs):
                run = await engine.start(one_step, i, run_id=f"srun_{i}")
                assert await run.result(timeout=20) == i + 1
            for _ in range(400):  # the last wrap-ups (their stream listings)
                if sum(_kind(q, world.schema) == "streams" for q in sent) >= runs:
                    break
                await asyncio.sleep(0.05)
            appends = world.append_stats.statements - statements
    finally:
        await world.aclose()
    kinds = Counter(_kind(query, world.schema) for query in sent)
    kinds.pop("queue", None)  # the engine's background lease polls, if due
    kinds.pop("engines", None)  # its heartbeat and sweep, if due
    kinds.pop("types", None)  # asyncpg's type introspection, on a connection's first use
    assert kinds == {"append": appends, "run": runs, "streams": runs}, kinds
    assert appends <= 3 * runs  # start, the step's start, its result with the run's end


def _kind(query: str, schema: str) -> str:
    text = " ".join(query.split())
    if text.startswith("WITH cas AS"):
        return "append"
    if text.startswith(f"SELECT view, input, owner_id, owner_epoch FROM {schema}.runs"):
        return "run"
    if f"FROM {schema}.streams" in text:
        return "streams"
    if f"{schema}.queue" in text:
        return "queue"
    if f"{schema}.engines" in text:
        return "engines"
    if "typeinfo_tree" in text or "set_config('jit'" in text:
        return "types"
    return text[:80]


async def test_a_notify_payload_never_exceeds_the_limit(pair: Pair, heard: Heard) -> None:
    """Far more pending news than one NOTIFY holds: the end carries what fits, and the rest
    waits for the notifier's own flush."""
    a, _ = pair
    await started_run(a, "srun_big")
    for i in range(1200):
        a._notifier.add(f"s:srun_pending_{i:05d}")
    await a.append("srun_big", [RunCompleted(run_id="srun_big", output=NULL)])
    await heard.until("t:srun_big")
    assert all(len(payload) < 8000 for payload in heard.payloads)
    assert a._notifier._pending  # what did not fit is still pending
    await a._notifier.flush()
    await heard.until("s:srun_pending_01199")
    assert all(len(payload) < 8000 for payload in heard.payloads)
    with pytest.raises(asyncpg.exceptions.PostgresError):  # the limit is the server's
        async with a._pool.acquire() as conn:
            await conn.execute("SELECT pg_notify('x', repeat('a', 8000))")


async def test_an_idle_lease_poll_is_one_statement(pair: Pair) -> None:
    """A lease that finds nothing due learns in the same statement when the next message
    is: it sleeps until then and takes it with the next one."""
    a, b = pair
    await b.enqueue("q", QueueMessage(run_id="srun_q", kind="run"), delay=0.3)
    before = await queries(a)
    async with asyncio.timeout(20):
        [lease] = await a.lease("q", lease_for=30, wait=10)
    assert lease.message.run_id == "srun_q"
    assert await queries(a) - before == 2  # nothing due (and when it will be), then the lease
    before = await queries(a)
    assert await a.lease("q", lease_for=30, wait=0) == []
    assert await queries(a) - before == 1


@pytest.mark.usefixtures("no_health_checks")
async def test_alone_a_world_sends_no_notify_and_a_newcomer_ends_that(url: str) -> None:
    """No other process's session of the world: an end's append sends no NOTIFY (nobody
    would hear it). A world that opens says hello, and the first one notifies again at once
    (not at its next health check, turned off here): the newcomer's waiter is woken."""
    a = await open_world(url)
    assert isinstance(a, PostgresWorld)
    heard = Heard()  # a raw session: not a world's, so not a peer
    heard.conn = await admin(url)
    await heard.conn.add_listener(f"{a.schema}_log", heard.got)
    try:
        assert not a.listener.peers  # it looked when it opened
        await started_run(a, "srun_alone")
        await a.append("srun_alone", [RunCompleted(run_id="srun_alone", output=NULL)])
        await started_run(a, "srun_two")
        await asyncio.sleep(0.3)
        assert heard.payloads == []
        assert a._notifier.flushes == 0
        b = await open_world(url)
        assert isinstance(b, PostgresWorld)
        try:
            await eventually(lambda: a.listener.peers)  # the hello, heard by A's listener
            waiter = asyncio.ensure_future(b.wait_for_run("srun_two", after_seq=2, terminal=True))
            await asyncio.sleep(0.1)
            await a.append("srun_two", [RunCompleted(run_id="srun_two", output=NULL)])
            async with asyncio.timeout(20):
                assert await waiter == 3  # by the NOTIFY: B's re-read is a minute away
            assert await a.listener.check_peers()
        finally:
            await b.aclose()
        assert not await a.listener.check_peers()  # B's sessions are gone
    finally:
        await heard.conn.close()
        await a.aclose()


@pytest.fixture
def no_health_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits re-read every minute, and listeners check their peers as rarely."""
    monkeypatch.setattr(pg_world, "_POLL", 60.0)
    monkeypatch.setattr(pg_notify, "_HEALTH_EVERY", 60.0)


async def test_a_world_that_cannot_look_for_peers_notifies(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused look (say, a server that hides other sessions) is taken as "there may be
    peers", never as a lost connection and never as "alone"."""
    monkeypatch.setattr(
        pg_notify, "_PEERS_SQL", "SELECT 1 / 0 WHERE $1::text <> '' AND $2::int[] IS NOT NULL"
    )
    a = await open_world(url)
    assert isinstance(a, PostgresWorld)
    try:
        assert a.listener.peers
        assert await a.listener.check_peers()
        assert a.listener.reconnects == 0
    finally:
        await a.aclose()
