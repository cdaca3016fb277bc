"""The remote world's own behaviour, beyond the shared suites: the URL and the token, errors
that keep their class across the wire, retried writes that are done once, long-polls, and
carrying on through a server restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from tests.worlds.served import served, world_app
from worldflow import Engine, step, workflow
from worldflow.errors import (
    ConfigurationError,
    EntityConflictError,
    HookNotFoundError,
    RunNotFoundError,
    RunOwnedElsewhereError,
    WorldError,
    WorldNotAvailableError,
)
from worldflow.worlds import (
    NULL,
    Fence,
    FileWorld,
    HookCreated,
    HookReceived,
    MemoryWorld,
    QueueMessage,
    RunCreated,
    RunStarted,
    open_world,
)
from worldflow.worlds._remote import RemoteWorld
from worldflow.worlds._wire import PREFIX

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def hosted() -> AsyncIterator[MemoryWorld]:
    world = MemoryWorld()
    yield world
    await world.aclose()


async def _create(world: RemoteWorld | MemoryWorld, run_id: str) -> None:
    await world.append(
        run_id,
        [RunCreated(run_id=run_id, workflow_name="wf", input=NULL), RunStarted(run_id=run_id)],
    )


# -- connecting ------------------------------------------------------------------------------


async def test_open_world_connects_with_the_token(
    hosted: MemoryWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with served(hosted, token=TOKEN) as url:
        world = await open_world(url, token=TOKEN)
        assert isinstance(world, RemoteWorld)
        await _create(world, "r1")
        assert (await hosted.get_run("r1")).status == "running"
        await world.aclose()

        monkeypatch.setenv("WORLDFLOW_TOKEN", TOKEN)
        from_env = await open_world(url)
        assert (await from_env.get_run("r1")).run_id == "r1"
        await from_env.aclose()


async def test_a_missing_or_wrong_token_is_a_configuration_error(
    hosted: MemoryWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORLDFLOW_TOKEN", raising=False)
    async with served(hosted, token=TOKEN) as url:
        with pytest.raises(ConfigurationError, match="token"):
            await open_world(url)
        with pytest.raises(ConfigurationError, match="403"):
            await open_world(url, token="wrong")


async def test_a_server_without_the_world_api_says_so() -> None:
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(WorldNotAvailableError, match=PREFIX):
            await open_world(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("url", ["http://", "http://h:1/?x=1", "http://user:pw@h:1", "ftp://h"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RemoteWorld(url)


async def test_token_is_only_for_remote_worlds() -> None:
    with pytest.raises(ConfigurationError, match="token"):
        await open_world("memory://", token="x")


# -- errors ------------------------------------------------------------------------------------


async def test_errors_keep_their_class_and_attributes(hosted: MemoryWorld) -> None:
    async with served(hosted) as url, RemoteWorld(url) as world:
        with pytest.raises(RunNotFoundError, match="nope"):
            await world.get_run("nope")
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token("no-such-token")
        await _create(world, "r1")
        with pytest.raises(EntityConflictError) as conflict:
            await _create(world, "r1")
        assert type(conflict.value) is EntityConflictError

        owner = await world.register_engine(workflows=["wf"], ttl=60)
        other = await world.register_engine(workflows=["wf"], ttl=60)
        claimed = await world.claim_orphans(owner.engine_id, workflows=["wf"], limit=10)
        assert [r.run_id for r in claimed] == ["r1"]
        with pytest.raises(RunOwnedElsewhereError) as refused:
            await world.append(
                "r1",
                [HookCreated(run_id="r1", correlation_id="h", token="t")],
                fence=Fence(engine_id=other.engine_id, epoch=claimed[0].owner_epoch),
            )
        assert refused.value.owner_id == owner.engine_id
        assert refused.value.owner_epoch == claimed[0].owner_epoch


async def test_an_unreachable_server_is_a_world_error_after_the_retry_budget() -> None:
    world = RemoteWorld(f"http://127.0.0.1:{_free_port()}", retry_for=0.3)
    with pytest.raises(WorldError, match="did not answer"):
        await world.get_run("r1")
    await world.aclose()


# -- idempotency -------------------------------------------------------------------------------


def _dropping_first_answer(path_end: str) -> tuple[Middleware, list[str]]:
    """A middleware that lets the first matching write happen, then cuts the connection
    instead of answering it (the answer is lost after the commit)."""
    seen: list[str] = []

    @web.middleware
    async def drop(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and request.path.endswith(path_end):
            seen.append(request.headers["Idempotency-Key"])
            if len(seen) == 1 and request.transport is not None:
                request.transport.abort()
        return response

    return drop, seen


async def _serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_a_retried_append_after_a_lost_answer_is_stored_once(hosted: MemoryWorld) -> None:
    await _create(hosted, "r1")
    await hosted.append("r1", [HookCreated(run_id="r1", correlation_id="h", token="tok")])
    app = world_app(hosted)
    drop, seen = _dropping_first_answer("/events")
    app.middlewares.insert(0, drop)
    runner, url = await _serve(app)
    try:
        async with RemoteWorld(url) as world:
            result = await world.append(
                "r1", [HookReceived(run_id="r1", correlation_id="h", payload=NULL)]
            )
    finally:
        await runner.cleanup()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    events = (await hosted.list_events("r1")).items
    assert [e.type for e in events].count("hook_received") == 1
    assert [e.seq for e in result.events] == [events[-1].seq]


async def test_a_retried_enqueue_and_stream_write_happen_once(hosted: MemoryWorld) -> None:
    await _create(hosted, "r1")
    app = world_app(hosted)
    drop_chunks, seen_chunks = _dropping_first_answer("/chunks")
    app.middlewares.insert(0, drop_chunks)
    runner, url = await _serve(app)
    try:
        async with RemoteWorld(url) as world:
            assert await world.write_stream("r1", "out", [b"a", b"b"]) == 2
            assert await world.write_stream("r1", "out", [b"c"]) == 3
    finally:
        await runner.cleanup()
    assert len(seen_chunks) == 3
    chunks = [c.data async for c in hosted.read_stream("r1", "out", follow=False)]
    assert chunks == [b"a", b"b", b"c"]


async def test_a_key_reused_for_another_request_is_refused(hosted: MemoryWorld) -> None:
    await _create(hosted, "r1")
    async with served(hosted) as url, aiohttp.ClientSession() as http:
        headers = {"Idempotency-Key": "k-1"}
        body: dict[str, list[str]] = {"chunks": []}
        path = f"{url}{PREFIX}/runs/r1/streams/out/chunks"
        async with http.post(path, json=body, headers=headers) as r:
            assert r.status == 200
        async with http.post(path.replace("out", "other"), json=body, headers=headers) as r:
            assert r.status == 400
            assert "Idempotency-Key" in (await r.json())["message"]


# -- waits -------------------------------------------------------------------------------------


async def test_a_long_lease_wait_is_one_request_until_a_message_comes(hosted: MemoryWorld) -> None:
    async with served(hosted) as url, RemoteWorld(url) as world:
        before = world.requests
        taking = asyncio.ensure_future(world.lease("q", lease_for=30, wait=20))
        await asyncio.sleep(0.2)
        assert not taking.done()
        await hosted.enqueue("q", QueueMessage(kind="run", run_id="r1"))
        leases = await asyncio.wait_for(taking, 10)
        assert [lease.message.run_id for lease in leases] == ["r1"]
        assert world.requests - before == 1


async def test_a_lease_whose_caller_went_away_is_given_back(hosted: MemoryWorld) -> None:
    async with served(hosted) as url, RemoteWorld(url) as world:
        taking = asyncio.ensure_future(world.lease("q", lease_for=600, wait=20))
        await asyncio.sleep(0.2)
        taking.cancel()  # closes the connection while the server waits
        await asyncio.sleep(0.1)
        await hosted.enqueue("q", QueueMessage(kind="run", run_id="r1"))
        # Not stuck on a lease nobody holds: the next consumer gets it at once.
        leases = await asyncio.wait_for(world.lease("q", lease_for=30, wait=10), 15)
        assert [lease.message.run_id for lease in leases] == ["r1"]


# -- restarts ----------------------------------------------------------------------------------


async def test_waiters_leases_and_streams_carry_on_through_a_restart(tmp_path: Path) -> None:
    port = _free_port()
    world_dir = tmp_path / "world"
    hosted = await FileWorld(world_dir).open()
    runner, url = await _serve(world_app(hosted), port)
    remote = RemoteWorld(url, retry_for=60)
    try:
        await _create(remote, "r1")
        last = (await remote.get_run("r1")).last_seq
        await remote.write_stream("r1", "out", [b"one"])
        waiter = asyncio.ensure_future(remote.wait_for_run("r1", after_seq=last))
        taker = asyncio.ensure_future(remote.lease("q", lease_for=30, wait=60))
        changes = await remote.wait_for_world(after=0, timeout=0)
        world_waiter = asyncio.ensure_future(remote.wait_for_world(after=changes))
        seen: list[bytes] = []

        async def read() -> None:
            async for chunk in remote.read_stream("r1", "out"):
                seen.append(chunk.data)  # noqa: PERF401  (seen while it is read, not at the end)

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.3)
        assert seen == [b"one"]

        await runner.cleanup()  # the server goes away...
        await hosted.aclose()
        await asyncio.sleep(0.3)
        assert not waiter.done()
        assert not taker.done()
        assert not reader.done()

        hosted = await FileWorld(world_dir).open()  # ...and comes back on the same port
        runner, _ = await _serve(world_app(hosted), port)
        await hosted.append("r1", [HookCreated(run_id="r1", correlation_id="h", token="t")])
        await hosted.enqueue("q", QueueMessage(kind="run", run_id="r1"))
        await hosted.write_stream("r1", "out", [b"two"])
        await hosted.close_stream("r1", "out")

        assert await asyncio.wait_for(waiter, 20) > last
        assert [lease.message.run_id for lease in await asyncio.wait_for(taker, 20)] == ["r1"]
        await asyncio.wait_for(reader, 20)
        assert seen == [b"one", b"two"]
        seen_after = await asyncio.wait_for(world_waiter, 20)
        assert seen_after > changes
        # A counter from before the restart is behind the new one: answered at once.
        assert await remote.wait_for_world(after=0, timeout=0) >= seen_after
        assert await remote.wait_for_world(after=changes, timeout=30) >= seen_after
    finally:
        await remote.aclose()
        await runner.cleanup()
        await hosted.aclose()


# -- an engine on a remote world -------------------------------------------------------------


@step
async def add_one(x: int) -> int:
    return x + 1


@workflow
async def chain(x: int) -> int:
    y = await add_one(x)
    return await add_one(y)


async def test_an_engine_runs_workflows_on_a_remote_world(tmp_path: Path) -> None:
    async with FileWorld(tmp_path / "w") as hosted, served(hosted) as url:
        world = await open_world(url)
        async with Engine(world, workflows=[chain]) as engine:
            run = await engine.start(chain, 1)
            assert await run.result(timeout=30) == 3
        await world.aclose()
        stored = await hosted.get_run(run.run_id)
        assert stored.status == "completed"
        assert msgspec.json.decode(stored.output) == 3
