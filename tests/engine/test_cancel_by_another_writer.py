"""A run cancelled by another writer (a ``Client`` on its own connection, as another process
would be) stops the step that is running in the engine driving it.

The engine learns of the cancel from the world, not from a call of its own: its step task
must be cancelled then, not left running to its end. (Planted in the #18 mutation run:
the driver's "cancelled by someone else" branch removed; no test noticed.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from tests.worlds import postgres_db
from worldflow import Client, Engine, step, workflow
from worldflow.worlds import MemoryWorld, RunStatus, World, open_world

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

_started = asyncio.Event()
_seen: list[str] = []


@step(name="cancel_other.slow", timeout="1h")
async def slow() -> str:
    _started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _seen.append("cancelled")
        raise
    _seen.append("ended")  # pragma: no cover - only with the bug
    return "done"


@workflow(name="cancel_other.flow")
async def flow() -> str:
    return await slow()


WorldPair = Callable[[], AbstractAsyncContextManager[tuple[World, World]]]


@asynccontextmanager
async def _memory() -> AsyncIterator[tuple[World, World]]:
    world = MemoryWorld()
    async with world:
        yield world, world  # one world object; the Client is still a writer of its own


@asynccontextmanager
async def _postgres() -> AsyncIterator[tuple[World, World]]:
    async with postgres_db.fresh_schema() as url:
        engine_side = await open_world(url)
        try:
            client_side = await open_world(url)  # its own pool: another process's view
            try:
                yield engine_side, client_side
            finally:
                await client_side.aclose()
        finally:
            await engine_side.aclose()


PAIRS = [
    pytest.param(_memory, id="memory"),
    pytest.param(
        _postgres,
        id="postgres",
        marks=pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
    ),
]


@pytest.mark.parametrize("pair", PAIRS)
async def test_a_cancel_by_another_writer_stops_the_running_step(pair: WorldPair) -> None:
    _started.clear()
    _seen.clear()
    async with pair() as (engine_world, client_world), Engine(engine_world, [flow]) as engine:
        run = await engine.start(flow)
        await asyncio.wait_for(_started.wait(), 10)
        await Client(client_world).cancel(run.run_id, "from another writer")
        for _ in range(200):  # 10 s at most: the engine learns it from the world
            if _seen:
                break
            await asyncio.sleep(0.05)
        assert _seen == ["cancelled"], "the step kept running after its run was cancelled"
        assert (await engine_world.get_run(run.run_id)).status is RunStatus.CANCELLED
