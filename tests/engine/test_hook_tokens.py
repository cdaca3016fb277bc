"""Default hook tokens: the same on every replay, different for every run, not derivable."""

from __future__ import annotations

import pytest

from tests.engine.runtime import WAIT
from worldflow import Engine, create_hook, workflow
from worldflow.worlds import HookStatus, MemoryWorld

pytestmark = pytest.mark.anyio


@workflow
async def waits_for_hook() -> object:
    return await create_hook()


async def _token_of(engine: Engine, world: MemoryWorld, run_id: str) -> str:
    while True:
        hooks = (await world.list_hooks(run_id=run_id, status=HookStatus.ACTIVE)).items
        if hooks:
            return hooks[0].token
        last = (await world.get_run(run_id)).last_seq
        await world.wait_for_run(run_id, after_seq=last, timeout=WAIT)


async def test_same_run_id_in_two_worlds_gets_different_default_tokens() -> None:
    tokens = []
    for _ in range(2):
        world = MemoryWorld()
        async with Engine(world, [waits_for_hook]) as engine:
            await engine.start(waits_for_hook, run_id="order-1")
            tokens.append(await _token_of(engine, world, "order-1"))
        await world.aclose()
    assert tokens[0] != tokens[1], "a chosen run id must not make the default token guessable"


async def test_default_token_survives_replay() -> None:
    world = MemoryWorld()
    async with Engine(world, [waits_for_hook]) as engine:
        run = await engine.start(waits_for_hook, run_id="order-2")
        token = await _token_of(engine, world, "order-2")
    async with Engine(world, [waits_for_hook]) as engine:  # rebuilt from the log
        await engine.resume_hook(token, {"ok": True})
        rerun = await engine.get_run(run.run_id)
        assert await rerun.result(timeout=WAIT) == {"ok": True}
    await world.aclose()
