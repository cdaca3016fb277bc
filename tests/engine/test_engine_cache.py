"""The instance cache: more runs asleep than ``max_cached_runs`` must not rebuild on each wake."""

from __future__ import annotations

import asyncio

import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import WAIT, result_of
from worldflow import Engine, sleep, workflow

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]


@workflow
async def napper(x: int) -> int:
    await sleep(1)
    return x


@workflow
async def long_napper(x: int) -> int:
    await sleep(3600)
    return x


async def test_runs_whose_timers_are_due_soon_stay_cached(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [napper], max_cached_runs=5) as engine:
        runs = await asyncio.gather(*(engine.start(napper, i) for i in range(40)))
        results = await asyncio.gather(*(result_of(r) for r in runs))
        assert results == list(range(40))
        # Built by start() (fed its first events before they were appended); none rebuilt
        # from its log when its timer fired.
        assert engine.driver.replays == 0


async def test_runs_asleep_for_long_are_evicted_beyond_the_limit(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [long_napper], max_cached_runs=5) as engine:
        runs = await asyncio.gather(*(engine.start(long_napper, i) for i in range(20)))
        for run in runs:
            async with asyncio.timeout(WAIT):
                async for event in run.events():
                    if event.type == "wait_created":
                        break
        assert len(engine.driver.cached_runs()) <= 5
