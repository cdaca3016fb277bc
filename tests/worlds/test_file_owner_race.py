"""The file world awaits its writer between checking a batch and committing it: an owner
change made meanwhile (an engine's release at its stop, a takeover) must survive the commit.

This was the cause of a flaky engine test under load: a stopping engine's last append
(``step_interrupted``) was still in the writer when the engine deregistered, and the commit
put the stale owner back, so the run stayed owned by an engine that was gone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from worldflow.worlds import (
    Fence,
    FileWorld,
    RunCreated,
    RunStarted,
    StepCreated,
    StepStarted,
)
from worldflow.worlds.testing._base import payload

pytestmark = pytest.mark.anyio


async def test_an_owner_released_during_a_write_stays_released(tmp_path: Path) -> None:
    async with FileWorld(tmp_path / "world", fsync=False) as world:
        engine = await world.register_engine(workflows=["wf"], ttl=60.0)
        fence = Fence(engine_id=engine.engine_id, epoch=0)
        created = await world.append(
            "wrun_1",
            [
                RunCreated(run_id="wrun_1", workflow_name="wf", input=payload([])),
                RunStarted(run_id="wrun_1"),
                StepCreated(
                    run_id="wrun_1", correlation_id="s1", step_name="st", input=payload([])
                ),
            ],
            fence=fence,
        )
        assert (created.run.owner_id, created.run.owner_epoch) == (engine.engine_id, 1)

        # Hold the next write in the writer until the engine has let its runs go.
        writer = world._writer
        assert writer is not None
        gate = asyncio.Event()
        in_writer = asyncio.Event()
        write = writer.append

        def held_append(path: str, data: bytes, *, new: bool = False) -> asyncio.Future[None]:
            done = write(path, data, new=new)
            held: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def relay() -> None:
                await done
                in_writer.set()
                await gate.wait()
                held.set_result(None)

            asyncio.get_running_loop().create_task(relay())
            return held

        writer.append = held_append  # type: ignore[method-assign]
        started = asyncio.create_task(
            world.append(
                "wrun_1",
                [StepStarted(run_id="wrun_1", correlation_id="s1")],
                fence=Fence(engine_id=engine.engine_id, epoch=1),
            )
        )
        async with asyncio.timeout(5):
            await in_writer.wait()
        assert await world.deregister_engine(engine.engine_id) == 1
        gate.set()
        async with asyncio.timeout(5):
            await started
        writer.append = write  # type: ignore[method-assign]

        run = await world.get_run("wrun_1")
        assert run.owner_id is None  # released, not put back by the write that was in flight
        assert run.owner_epoch == 1
        assert run.last_seq == 4
        # Anyone may now claim it, as after any clean stop.
        other = await world.register_engine(workflows=["wf"], ttl=60.0)
        [claimed] = await world.claim_orphans(other.engine_id, workflows=["wf"], limit=10)
        assert (claimed.owner_id, claimed.owner_epoch) == (other.engine_id, 2)
