"""A child's outcome reaches its parent on a channel only the engine writes; reserved tokens."""

from __future__ import annotations

import asyncio

import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import WAIT, result_of, types_of
from worldflow import Engine, HookNotFoundError, InvalidEventError, create_hook, workflow
from worldflow.worlds import NULL, HookReceived, RunStatus

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]


@workflow(name="channel.kid")
async def kid(n: int) -> int:
    extra: int = await create_hook(token=f"kid-go:{n}")
    return n + extra


@workflow(name="channel.parent")
async def parent(n: int) -> int:
    return await kid(n) * 10


@workflow(name="channel.squatter")
async def squatter(token: str) -> str:
    try:
        await create_hook(token=token)
    except ValueError as exc:
        return str(exc)
    return "created"


async def _child_id(engine: Engine, parent_id: str) -> str:
    async with asyncio.timeout(WAIT):
        while True:
            hooks = (await engine.world.list_hooks(run_id=parent_id)).items
            if hooks:
                return hooks[0].token.removeprefix("worldflow:child:")
            await engine.world.wait_for_run(
                parent_id, after_seq=(await engine.world.get_run(parent_id)).last_seq
            )


async def test_a_forged_child_outcome_is_refused(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [parent, kid]) as engine:
        run = await engine.start(parent, 4)
        child_id = await _child_id(engine, run.run_id)
        token = f"worldflow:child:{child_id}"
        with pytest.raises(HookNotFoundError, match="engine's own"):
            await engine.resume_hook(token, {"status": "completed", "output": 999})
        # Not through the world either: a hook_received cannot go to a child's hook.
        hook = (await world.list_hooks(run_id=run.run_id)).items[0]
        with pytest.raises(InvalidEventError, match="only the engine sends"):
            await world.append(
                run.run_id,
                [HookReceived(run_id=run.run_id, correlation_id=hook.hook_id, payload=NULL)],
            )
        assert await run.status() is RunStatus.RUNNING
        async with asyncio.timeout(WAIT):
            async for event in run.events():
                if event.type == "step_completed":  # the child run is started
                    break
            async for event in (await engine.get_run(child_id)).events():
                if event.type == "hook_created":
                    break
        await engine.resume_hook("kid-go:4", 1)
        assert await result_of(run) == 50
        types = await types_of(world, run.run_id)
        assert "child_ended" in types
        assert "hook_received" not in types


@pytest.mark.parametrize("token", ["worldflow:child:x", "worldflow:anything"])
async def test_user_code_cannot_create_a_reserved_token(worlds: Worlds, token: str) -> None:
    world = await worlds.open()
    async with Engine(world, [squatter]) as engine:
        run = await engine.start(squatter, token)
        message = await result_of(run)
        assert "reserved for the engine's own hooks" in message
        assert "hook_created" not in await types_of(world, run.run_id)
