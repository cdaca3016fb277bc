"""A stalled run on the run page: why (both sides of the divergence), and its two actions."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.inspector.conftest import client_for, ui_app
from worldflow import Engine, create_hook, step, workflow
from worldflow.worlds import MemoryWorld, RunStatus

pytestmark = pytest.mark.anyio

VERSION = {"v": 1}


@step(name="ui.reserve")
async def reserve(item: str) -> str:
    return f"reserved {item}"


@step(name="ui.notify")
async def notify(item: str) -> str:
    return f"told {item}"


@workflow(name="ui.stalled")
async def changing(item: str) -> str:
    done = await reserve(item) if VERSION["v"] == 1 else await notify(item)
    extra = await create_hook(token=f"go:{item}")
    return f"{done} {extra}"


async def test_a_stalled_run_shows_its_divergence_and_can_be_replayed_or_failed() -> None:
    VERSION["v"] = 1
    world = MemoryWorld()
    async with Engine(world, [changing]) as engine:
        run = await engine.start(changing, "a", run_id="st-a")
        async with asyncio.timeout(10):
            async for event in run.events():
                if event.type == "hook_created":
                    break
        VERSION["v"] = 2
        engine.evict()
        await engine.raise_event("st-a", "poke")
        async with asyncio.timeout(10):
            while (await world.get_run("st-a")).status is not RunStatus.STALLED:
                await world.wait_for_run("st-a", after_seq=(await world.get_run("st-a")).last_seq)
        client = await client_for(ui_app(engine))
        try:
            html = await (await client.get("/runs/st-a")).text()
            assert "Stalled: the code no longer replays this run" in html
            assert "Recorded in the log" in html
            assert "step &#39;ui.reserve&#39;" in html
            assert "step &#39;ui.notify&#39;" in html
            assert 'data-count="stalled">1' in (await (await client.get("/")).text())
            token = re.search(r'name="csrf" value="([^"]+)"', html)
            assert token is not None
            hdrs = {"Origin": f"http://{client.host}:{client.port}"}

            async def post(url: str, **data: str) -> Any:
                return await client.post(
                    url, data={"csrf": token.group(1), **data}, headers=hdrs, allow_redirects=False
                )

            still = await post("/runs/st-a/unstall")
            assert still.headers["Location"] == "/runs/st-a?done=still-stalled"
            VERSION["v"] = 1
            again = await post("/runs/st-a/unstall")
            assert again.headers["Location"] == "/runs/st-a?done=unstalled"
            assert (await world.get_run("st-a")).status is not RunStatus.STALLED
            html = await (await client.get("/runs/st-a")).text()
            assert 'aria-describedby="why-fail' not in html or "Only a stalled run" in html

            run_b = await engine.start(changing, "b", run_id="st-b")
            async with asyncio.timeout(10):
                async for event in run_b.events():
                    if event.type == "hook_created":
                        break
            VERSION["v"] = 2
            engine.evict()
            await engine.raise_event("st-b", "poke")
            async with asyncio.timeout(10):
                while (await world.get_run("st-b")).status is not RunStatus.STALLED:
                    await world.wait_for_run(
                        "st-b", after_seq=(await world.get_run("st-b")).last_seq
                    )
            assert (await post("/runs/st-b/fail")).status == 400  # not confirmed
            failed = await post("/runs/st-b/fail", confirm="yes")
            assert failed.headers["Location"] == "/runs/st-b?done=failed"
            assert (await world.get_run("st-b")).status is RunStatus.FAILED
        finally:
            await client.close()
    await world.aclose()
    VERSION["v"] = 1
