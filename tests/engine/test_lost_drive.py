"""A drive whose append is refused as "owned elsewhere" while this engine claims the run
again (a server restart or a late heartbeat made its old fence stale) must not drop the run:
the claim's drive request came in meanwhile, so the run is driven again from its log.

Found by ``tests/worlds/test_remote_processes.py`` under load: a run parked at a hook got
its payload, the owner's drive of it was refused with the pre-restart fence while the same
engine re-claimed it, and the run stayed ``running``, owned by a live engine, forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from worldflow import Client, Engine, create_hook, step, workflow
from worldflow.worlds import AnyEvent, EventResult, Fence, MemoryWorld

pytestmark = pytest.mark.anyio


@step
async def plus_one(x: int) -> int:
    return x + 1


@workflow
async def parked() -> int:
    payload = await create_hook(token="lost-drive")
    return await plus_one(int(payload))


class HeldWorld(MemoryWorld):
    """A memory world that holds the next fenced append to ``hold`` until ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: str | None = None
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        if run_id == self.hold and fence is not None:
            self.hold = None
            self.entered.set()
            await self.release.wait()
        return await super().append(run_id, events, fence=fence, expected_seq=expected_seq)


async def test_a_refused_drive_goes_on_when_the_engine_claimed_the_run_meanwhile() -> None:
    world = HeldWorld()
    async with Engine(world, workflows=[parked], recover=False, consume_queues=False) as engine:
        run = await engine.start(parked, run_id="r")
        assert (await world.get_hook_by_token("lost-drive")).run_id == "r"
        world.hold = "r"
        await Client(world).resume_hook("lost-drive", 41)  # from afar: a queue message
        drive = asyncio.ensure_future(engine.driver.drive("r", fetch=True))
        await asyncio.wait_for(world.entered.wait(), 5)  # its append carries epoch 1
        engine_id = engine.engine_id
        assert engine_id is not None
        assert await world.release_runs(engine_id, ["r"]) == 1
        assert await engine.recover() == 1  # claimed again (epoch 2): asks for a drive
        world.release.set()  # the held append is refused: its fence is stale
        await drive
        assert await run.result(timeout=5) == 42
