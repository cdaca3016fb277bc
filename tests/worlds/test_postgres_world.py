"""The PostgreSQL world with two instances on one schema, standing in for two processes.

Each test gets a fresh schema. Wake-up tests raise the worlds' safety poll to a minute, so a
waiter that wakes within the test's bound was woken by a notification (or by the resync
after a reconnect), not by polling; the bounds only stop a broken build from hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.worlds import postgres_db
from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    LeaseLostError,
    RunNotFoundError,
)
from worldflow.worlds import (
    NULL,
    EventRaised,
    EventResult,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookStatus,
    QueueMessage,
    RunCompleted,
    RunCreated,
    RunStarted,
    RunStatus,
    StepCompleted,
    StepCreated,
    StepStarted,
    WorkflowRun,
    open_world,
)
from worldflow.worlds._postgres import PostgresWorld, codec
from worldflow.worlds._postgres import queue as pg_queue
from worldflow.worlds._postgres import world as pg_world
from worldflow.worlds._postgres.schema import SCHEMA_VERSION, migrate

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
]

Pair = tuple[PostgresWorld, PostgresWorld]


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_db.fresh_schema() as schema_url:
        yield schema_url


@pytest.fixture
async def pair(url: str) -> AsyncIterator[Pair]:
    async with postgres_db.two_worlds(url) as (a, b):
        # A looked for peers when it opened, alone; it notifies once it has heard B's hello,
        # which it answers with a catch-up (B resyncs): the tests start after both.
        await eventually(lambda: a.listener.peers and b.listener.resyncs == 1)
        yield a, b


@pytest.fixture
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits re-read only every minute: only a notification can wake them in time."""
    monkeypatch.setattr(pg_world, "_POLL", 60.0)
    monkeypatch.setattr(pg_queue, "_POLL", 60.0)


def reads(world: PostgresWorld) -> tuple[int, int, int]:
    """The appender's statements, run reloads and token-holder reads so far. (Not the pool's
    query count: the coalesced NOTIFY shares the pool, and a connection that prepares a
    statement the first time may add asyncpg's type introspection queries.)"""
    stats = world.append_stats
    return stats.statements, stats.reloads, stats.token_reads


async def admin(url: str) -> Any:
    return await asyncpg.connect(url.partition("?")[0])


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


def raw(data: bytes) -> msgspec.Raw:
    return msgspec.Raw(data)


async def started_run(world: PostgresWorld, run_id: str, steps: int = 0) -> list[str]:
    await world.append(
        run_id,
        [RunCreated(run_id=run_id, workflow_name="wf", input=raw(b"1")), RunStarted(run_id=run_id)],
    )
    ids = [f"step_{i}" for i in range(steps)]
    if ids:
        events: list[Any] = []
        for step_id in ids:
            events.append(
                StepCreated(run_id=run_id, correlation_id=step_id, step_name="s", input=raw(b"0"))
            )
            events.append(StepStarted(run_id=run_id, correlation_id=step_id))
        await world.append(run_id, events)
    return ids


# -- the log across instances -------------------------------------------------------------


async def test_concurrent_appends_from_two_instances_keep_seq_dense(pair: Pair) -> None:
    a, b = pair
    steps = await started_run(a, "wrun_fan", steps=200)
    writers = [a if i % 2 else b for i in range(len(steps))]
    results = await asyncio.gather(
        *(
            w.append(
                "wrun_fan",
                [StepCompleted(run_id="wrun_fan", correlation_id=s, result=raw(b'{"n": 1}'))],
            )
            for w, s in zip(writers, steps, strict=True)
        )
    )
    seqs = [r.events[0].seq for r in results]
    assert sorted(seqs) == list(range(403, 603))  # 2 + 400 before; dense, none twice
    events = (await b.list_events("wrun_fan")).items
    assert [e.seq for e in events] == list(range(1, 603))
    # Coalesced: far fewer statements than batches on each instance.
    for world in pair:
        assert world.append_stats.statements < world.append_stats.batches / 2


async def test_a_step_result_that_lost_the_race_is_a_conflict(pair: Pair) -> None:
    a, b = pair
    [step] = await started_run(a, "wrun_race", steps=1)
    await b.get_run("wrun_race")
    outcomes = await asyncio.gather(
        *(
            w.append(
                "wrun_race",
                [
                    StepCompleted(
                        run_id="wrun_race", correlation_id=step, result=raw(str(i).encode())
                    )
                ],
            )
            for i, w in enumerate([a, b, a, b])
        ),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(won) == 1
    assert all(isinstance(o, EntityConflictError) for o in outcomes if o not in won)
    steps = (await a.list_steps("wrun_race")).items
    events = (await a.list_events("wrun_race")).items
    completed = [e for e in events if isinstance(e, StepCompleted)]
    assert len(completed) == 1
    assert bytes(steps[0].output) == bytes(completed[0].result)


async def test_a_token_claimed_on_two_instances_at_once_goes_to_one_hook(pair: Pair) -> None:
    a, b = pair
    for rounds in range(10):
        ra, rb = f"wrun_ta{rounds}", f"wrun_tb{rounds}"
        await started_run(a, ra)
        await started_run(b, rb)
        token = f"tok-{rounds}"
        ea, eb = await asyncio.gather(
            a.append(ra, [HookCreated(run_id=ra, correlation_id="h", token=token)]),
            b.append(rb, [HookCreated(run_id=rb, correlation_id="h", token=token)]),
        )
        kinds = sorted(type(r.events[0]).__name__ for r in (ea, eb))
        assert kinds == ["HookConflict", "HookCreated"]
        winner = ea if isinstance(ea.events[0], HookCreated) else eb
        loser = eb if winner is ea else ea
        conflict = loser.events[0]
        assert isinstance(conflict, HookConflict)
        assert conflict.conflicting_run_id == winner.run.run_id
        assert (await a.get_hook_by_token(token)).run_id == winner.run.run_id
        assert (await b.get_hook_by_token(token)).run_id == winner.run.run_id


async def test_a_new_token_is_assumed_free_and_the_index_catches_a_held_one(pair: Pair) -> None:
    a, b = pair
    await started_run(a, "wrun_ha")
    await started_run(b, "wrun_hb")
    await a.append("wrun_ha", [HookCreated(run_id="wrun_ha", correlation_id="h", token="held")])
    # A free token: the append is its one statement (no read of who holds the token).
    sent = reads(b)
    created = await b.append(
        "wrun_hb", [HookCreated(run_id="wrun_hb", correlation_id="h1", token="free")]
    )
    assert reads(b) == (sent[0] + 1, sent[1], sent[2])
    assert isinstance(created.events[0], HookCreated)
    # A token another run holds: the live-token index refuses the first statement, and the
    # retry reads the holder and stores the claim as a conflict.
    misses, sent = b.append_stats.cas_misses, reads(b)
    refused = await b.append(
        "wrun_hb", [HookCreated(run_id="wrun_hb", correlation_id="h2", token="held")]
    )
    [conflict] = refused.events
    assert isinstance(conflict, HookConflict)
    assert conflict.conflicting_run_id == "wrun_ha"
    assert b.append_stats.cas_misses == misses + 1
    assert reads(b) == (sent[0] + 2, sent[1] + 1, sent[2] + 1)
    assert (await b.get_hook_by_token("held")).run_id == "wrun_ha"
    # A token this run already holds is known from the cache: a conflict at once.
    misses = b.append_stats.cas_misses
    sent = reads(b)
    again = await b.append(
        "wrun_hb", [HookCreated(run_id="wrun_hb", correlation_id="h3", token="free")]
    )
    assert isinstance(again.events[0], HookConflict)
    assert b.append_stats.cas_misses == misses
    assert reads(b) == (sent[0] + 1, sent[1], sent[2])


async def test_a_token_assumed_free_is_read_when_the_statement_leaves_its_hook_ended(
    pair: Pair,
) -> None:
    # The live-token index sees only hooks the statement leaves active: a hook created and
    # ended in one statement is never checked by it, so its token is read before.
    a, b = pair
    await started_run(a, "wrun_ha")
    await a.append("wrun_ha", [HookCreated(run_id="wrun_ha", correlation_id="h", token="held")])

    def created(run_id: str, token: str = "held") -> HookCreated:
        return HookCreated(run_id=run_id, correlation_id="h2", token=token)

    # One batch creates the hook and ends the run (which disposes its hooks).
    await started_run(b, "wrun_b1")
    ended = await b.append(
        "wrun_b1", [created("wrun_b1"), RunCompleted(run_id="wrun_b1", output=NULL)]
    )
    assert [e.type for e in ended.events] == ["hook_conflict", "run_completed"]
    conflict = ended.events[0]
    assert isinstance(conflict, HookConflict)
    assert conflict.conflicting_run_id == "wrun_ha"
    # One batch creates the hook and disposes it: the conflict leaves no hook to dispose.
    await started_run(b, "wrun_b2")
    with pytest.raises(HookNotFoundError):
        await b.append(
            "wrun_b2", [created("wrun_b2"), HookDisposed(run_id="wrun_b2", correlation_id="h2")]
        )
    # Two batches coalesced into one statement: the first creates, the second disposes.
    await started_run(b, "wrun_b3")
    first, second = await asyncio.gather(
        b.append("wrun_b3", [created("wrun_b3")]),
        b.append("wrun_b3", [HookDisposed(run_id="wrun_b3", correlation_id="h2")]),
        return_exceptions=True,
    )
    assert isinstance(first, EventResult)
    assert [e.type for e in first.events] == ["hook_conflict"]
    assert isinstance(second, HookNotFoundError)
    for run_id in ("wrun_b1", "wrun_b2", "wrun_b3"):
        assert [h.token for h in (await b.list_hooks(run_id=run_id)).items] == []
    assert (await b.get_hook_by_token("held")).run_id == "wrun_ha"
    # A free token in such a statement is read too, and is free: the hook is created.
    await started_run(b, "wrun_b4")
    free = await b.append(
        "wrun_b4", [created("wrun_b4", "free"), HookDisposed(run_id="wrun_b4", correlation_id="h2")]
    )
    assert [e.type for e in free.events] == ["hook_created", "hook_disposed"]
    [hook] = (await b.list_hooks(run_id="wrun_b4")).items
    assert (hook.token, hook.status) == ("free", HookStatus.DISPOSED)


# -- the queue across instances -----------------------------------------------------------


def message(n: int) -> QueueMessage:
    return QueueMessage(kind="run", run_id=f"wrun_{n}")


async def test_leases_are_exclusive_across_instances(pair: Pair) -> None:
    a, b = pair
    ids = {await a.enqueue("q", message(n)) for n in range(40)}
    got: list[str] = []

    async def consume(world: PostgresWorld) -> None:
        while leases := await world.lease("q", lease_for=30, max_messages=3):
            got.extend(x.message_id for x in leases)

    await asyncio.gather(consume(a), consume(b), consume(a), consume(b))
    assert sorted(got) == sorted(ids)  # every message once, none twice


async def test_an_expired_lease_moves_to_the_other_instance(pair: Pair) -> None:
    a, b = pair
    message_id = await a.enqueue("q", message(1), idempotency_key="run:1")
    [first] = await a.lease("q", lease_for=0.05)
    # The key is free once leased: a second enqueue is a new message.
    assert await b.enqueue("q", message(1), idempotency_key="run:1") != message_id
    async with asyncio.timeout(10):
        leases = await b.lease("q", lease_for=30, max_messages=5, wait=5)
        while message_id not in {x.message_id for x in leases}:
            leases += await b.lease("q", lease_for=30, max_messages=5, wait=5)
    [second] = [x for x in leases if x.message_id == message_id]
    assert second.attempt == 2
    with pytest.raises(LeaseLostError):
        await a.ack(first)
    await b.ack(second)


@pytest.mark.usefixtures("no_polling")
async def test_lease_wait_wakes_on_the_other_instances_enqueue(pair: Pair) -> None:
    a, b = pair
    waiter = asyncio.ensure_future(b.lease("q", lease_for=30, wait=30))
    await asyncio.sleep(0.2)  # let it block (correctness does not depend on this)
    await a.enqueue("q", message(7))
    async with asyncio.timeout(20):
        [lease] = await waiter
    assert lease.message == message(7)


# -- notifications across instances -------------------------------------------------------


@pytest.mark.usefixtures("no_polling")
async def test_wait_for_run_wakes_on_the_other_instances_append(pair: Pair) -> None:
    a, b = pair
    await started_run(a, "wrun_w")
    for name, seq in (("x", 3), ("y", 4)):  # external events: notified by the statement
        event = EventRaised(run_id="wrun_w", name=name)
        waiter = asyncio.ensure_future(a.wait_for_run("wrun_w", after_seq=seq - 1))
        await asyncio.sleep(0.1)
        await b.append("wrun_w", [event])
        async with asyncio.timeout(20):
            assert await waiter == seq
    # A non-urgent append is announced by the coalescing notifier.
    waiter = asyncio.ensure_future(a.wait_for_run("wrun_w", after_seq=4))
    await asyncio.sleep(0.1)
    await b.append(
        "wrun_w", [StepCreated(run_id="wrun_w", correlation_id="s", step_name="s", input=NULL)]
    )
    async with asyncio.timeout(20):
        assert await waiter == 5


@pytest.mark.usefixtures("no_polling")
async def test_a_result_waiter_wakes_on_the_other_instances_end_only(pair: Pair) -> None:
    """wait_for_run(terminal=True) in A: B's appends that leave the run going do not end it
    (announced, but not as an end); B's run_completed does, by its statement's NOTIFY."""
    a, b = pair
    await started_run(a, "wrun_t")
    waiter = asyncio.ensure_future(a.wait_for_run("wrun_t", after_seq=2, terminal=True))
    await asyncio.sleep(0.1)
    await b.append("wrun_t", [EventRaised(run_id="wrun_t", name="x")])  # urgent: notified
    await b.append(
        "wrun_t", [StepCreated(run_id="wrun_t", correlation_id="s", step_name="s", input=NULL)]
    )
    await asyncio.sleep(0.3)  # both announced by now (a slower world only delays a failure)
    assert not waiter.done()
    await b.append("wrun_t", [RunCompleted(run_id="wrun_t", output=NULL)])
    async with asyncio.timeout(20):
        assert await waiter == 5


async def test_an_end_this_process_committed_is_waited_for_without_a_read(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    await started_run(a, "wrun_e")
    await a.append("wrun_e", [RunCompleted(run_id="wrun_e", output=NULL)])

    def no_connection() -> Any:
        raise AssertionError("wait_for_run read the database")

    with monkeypatch.context() as patched:
        patched.setattr(a._pool, "acquire", no_connection)
        assert await a.wait_for_run("wrun_e", after_seq=2, terminal=True) == 3
        assert await a.wait_for_run("wrun_e", after_seq=0, terminal=True) == 3
    # Another instance, which never wrote the run, reads where it is.
    assert await b.wait_for_run("wrun_e", after_seq=2, terminal=True) == 3


@pytest.mark.usefixtures("no_polling")
async def test_a_killed_listener_reconnects_and_resyncs(pair: Pair, url: str) -> None:
    a, b = pair
    await started_run(a, "wrun_k")
    waiter = asyncio.ensure_future(a.wait_for_run("wrun_k", after_seq=2))
    await asyncio.sleep(0.1)
    conn = await admin(url)
    try:
        pid = a.listener.connection.get_server_pid()
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    # Appended while A may be deaf: the resync after the reconnect wakes the waiter anyway.
    await b.append("wrun_k", [EventRaised(run_id="wrun_k", name="while-deaf")])
    async with asyncio.timeout(20):
        assert await waiter == 3
        await eventually(lambda: a.listener.reconnects >= 1)
    # And the new connection hears the next one.
    waiter = asyncio.ensure_future(a.wait_for_run("wrun_k", after_seq=3))
    await asyncio.sleep(0.1)
    await b.append("wrun_k", [EventRaised(run_id="wrun_k", name="after")])
    async with asyncio.timeout(20):
        assert await waiter == 4


async def test_a_lost_notification_never_hangs_a_waiter(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's listener hears nothing (every notification lost): its waits still end, on the
    bounded re-read, for a run's log, the world's counter and a queue lease."""
    monkeypatch.setattr(pg_world, "_POLL", 0.3)
    monkeypatch.setattr(pg_queue, "_POLL", 0.3)
    a, b = pair
    heard: list[str] = []
    monkeypatch.setattr(a.listener, "_on_notify", lambda channel, payload: heard.append(channel))
    await started_run(b, "wrun_l")
    changes = await a.wait_for_world(after=0, timeout=0)
    run_waiter = asyncio.ensure_future(a.wait_for_run("wrun_l", after_seq=2))
    world_waiter = asyncio.ensure_future(a.wait_for_world(after=changes))
    lease_waiter = asyncio.ensure_future(a.lease("q", lease_for=30, wait=60))
    await asyncio.sleep(0.1)
    await b.append("wrun_l", [EventRaised(run_id="wrun_l", name="unheard")])
    await b.enqueue("q", message(1))
    # With the re-read at a minute (or none) these would not end in time: checked by hand.
    async with asyncio.timeout(20):
        assert await run_waiter == 3
        assert await world_waiter > changes
        [lease] = await lease_waiter
    assert lease.message.run_id == message(1).run_id
    assert heard, "the notifications did arrive: the handler dropped them"


# -- unknown outcomes, purge races, cursors, migrations ------------------------------------


@pytest.mark.parametrize("point", ["before", "after"])
async def test_an_append_whose_outcome_is_unknown_is_stored_once(
    pair: Pair, url: str, point: str
) -> None:
    a, _ = pair
    [step] = await started_run(a, "wrun_u", steps=1)
    fired: list[str] = []

    async def cut(where: str, conn: Any) -> None:
        if where != point or fired:
            return
        fired.append(where)
        killer = await admin(url)
        try:
            await killer.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        finally:
            await killer.close()
        if where == "after":  # committed, but the reply is lost
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")

    a.set_fault(cut)
    result = await a.append(
        "wrun_u", [StepCompleted(run_id="wrun_u", correlation_id=step, result=raw(b"42"))]
    )
    a.set_fault(None)
    assert fired == [point]
    assert a.append_stats.unknown_outcomes == 1
    events = (await a.list_events("wrun_u")).items
    assert [e.type for e in events].count("step_completed") == 1
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[-1].event_id == result.events[0].event_id
    assert (await a.get_run("wrun_u")).last_seq == 5


async def test_purge_racing_appends_leaves_no_orphans(pair: Pair, url: str) -> None:
    a, b = pair
    for n in range(5):
        run_id = f"wrun_p{n}"
        steps = await started_run(a, run_id, steps=3)
        await a.append(run_id, [RunCompleted(run_id=run_id, output=NULL)])
        # Running steps may still record results after the run ended; race them with purge.
        outcomes = await asyncio.gather(
            b.purge(run_id),
            *(
                b.append(run_id, [StepCompleted(run_id=run_id, correlation_id=s, result=NULL)])
                for s in steps
            ),
            return_exceptions=True,
        )
        assert outcomes[0] is None
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, RunNotFoundError) for o in errors), errors
        with pytest.raises(RunNotFoundError):
            await a.get_run(run_id)
    conn = await admin(url)
    try:
        schema = a.schema
        for table in ("events", "steps", "hooks", "waits", "queue", "streams", "stream_chunks"):
            left = await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}")
            assert left == 0, f"{left} orphan rows in {table}"
    finally:
        await conn.close()


async def test_ascending_pages_take_runs_that_commit_late(pair: Pair, url: str) -> None:
    a, _ = pair
    for n in range(6):
        await started_run(a, f"wrun_c{n}")
    late = await admin(url)
    try:
        tx = late.transaction()
        await tx.start()
        run = WorkflowRun(
            run_id="wrun_late",
            workflow_name="wf",
            status=RunStatus.PENDING,
            input=raw(b"1"),
            created_at=a.clock.now(),
            updated_at=a.clock.now(),
            last_seq=1,
        )
        # Takes its position now, becomes visible only at commit (after page 1 was read).
        await late.execute(
            f"INSERT INTO {a.schema}.runs (run_id, workflow_name, status, last_seq, metadata, "
            "created_at, input, view) VALUES ($1, 'wf', 'pending', 1, '{}', $2, $3, $4)",
            run.run_id,
            run.created_at,
            b"1",
            codec.encode_run(run),
        )
        await started_run(a, "wrun_after")
        first = await a.list_runs(order="asc", limit=4)
        await tx.commit()
    finally:
        await late.close()
    seen = [r.run_id for r in first.items]
    cursor = first.cursor
    while cursor is not None:
        page = await a.list_runs(order="asc", limit=4, cursor=cursor)
        seen += [r.run_id for r in page.items]
        cursor = page.cursor
    assert sorted(seen) == sorted([f"wrun_c{n}" for n in range(6)] + ["wrun_late", "wrun_after"])
    assert len(seen) == len(set(seen))


async def test_worlds_opened_at_once_on_an_empty_schema_migrate_once(url: str) -> None:
    worlds = await asyncio.gather(*(open_world(url) for _ in range(4)))
    try:
        await started_run(worlds[0], "wrun_m")  # type: ignore[arg-type]
        assert (await worlds[3].get_run("wrun_m")).status is RunStatus.RUNNING
        conn = await admin(url)
        try:
            schema = url.rpartition("schema=")[2]
            assert await migrate(conn, schema) == SCHEMA_VERSION  # already there: a no-op
        finally:
            await conn.close()
    finally:
        for world in worlds:
            await world.aclose()


async def test_payloads_come_back_byte_for_byte(pair: Pair) -> None:
    a, b = pair
    odd = b'{"z": 1,   "a": [1, 2.50, "\\u00e9"],\n "m": {"y": null}}'
    await a.append("wrun_b", [RunCreated(run_id="wrun_b", workflow_name="wf", input=raw(odd))])
    assert bytes((await b.get_run("wrun_b")).input) == odd
    [created] = (await b.list_events("wrun_b")).items
    assert isinstance(created, RunCreated)
    assert bytes(created.input) == odd
    await b.write_stream("wrun_b", "out", [b"\x00\xff raw", b""])
    chunks = [c.data async for c in a.read_stream("wrun_b", "out", follow=False)]
    assert chunks == [b"\x00\xff raw", b""]


async def test_aclose_closes_every_session(url: str) -> None:
    world = await open_world(url)
    assert isinstance(world, PostgresWorld)
    await started_run(world, "wrun_s")
    name = f"worldflow:{world.schema}"
    conn = await admin(url)
    try:
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        assert await conn.fetchval(count, name) >= 2  # the pool and the listener
        await world.aclose()
        for _ in range(200):
            if not await conn.fetchval(count, name):
                break
            await asyncio.sleep(0.05)
        assert await conn.fetchval(count, name) == 0
    finally:
        await conn.close()


async def test_maintenance_vacuums_the_queue_one_instance_at_a_time(pair: Pair, url: str) -> None:
    a, b = pair
    for n in range(50):
        await a.enqueue("q", message(n))
    while leases := await a.lease("q", lease_for=30, max_messages=16):
        for lease in leases:
            await a.ack(lease)
    conn = await admin(url)
    try:
        key = f"worldflow-maintenance:{a.schema}"
        locked = "SELECT pg_advisory_lock(hashtextextended($1, 7008))"
        await conn.execute(locked, key)  # another instance is at it: the others skip
        assert await a.maintain() is False
        await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 7008))", key)
        size = f"SELECT pg_relation_size('{a.schema}.queue')"
        assert await conn.fetchval(size) > 0  # every message acked: only dead rows left
        assert await b.maintain() is True
        assert await conn.fetchval(size) == 0  # vacuumed: the empty pages are gone
    finally:
        await conn.close()
