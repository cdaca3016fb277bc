"""A run that meets changed code is stalled, not failed; code that replays it lets it go on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import WAIT, log_of, result_of, types_of
from worldflow import (
    Engine,
    EntityConflictError,
    WorkflowFailedError,
    create_hook,
    step,
    workflow,
)
from worldflow.worlds import NULL, RunCreated, RunStalled, RunStarted, RunStatus

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]

VERSION = {"v": 1}
"""Which code the workflow runs: 1 is the code the runs were recorded with, 2 a change."""


@step(name="stalled.reserve")
async def reserve(item: str) -> str:
    return f"reserved {item}"


@step(name="stalled.notify")
async def notify(item: str) -> str:
    return f"told {item}"


@workflow(name="stalled.order")
async def order(item: str) -> str:
    done = await reserve(item) if VERSION["v"] == 1 else await notify(item)
    extra = await create_hook(token=f"go:{item}")
    return f"{done} {extra}"


@workflow(name="stalled.other")
async def other(item: str) -> str:
    return item


@pytest.fixture(autouse=True)
def _version() -> None:
    VERSION["v"] = 1


async def _parked(engine: Engine, item: str) -> str:
    run = await engine.start(order, item, run_id=f"order-{item}")
    async with asyncio.timeout(WAIT):
        async for event in run.events():
            if event.type == "hook_created":
                break
    return run.run_id


async def _status(engine: Engine, run_id: str) -> RunStatus:
    return (await engine.world.get_run(run_id)).status


async def test_changed_code_stalls_the_run_and_the_old_code_lets_it_go_on(
    worlds: Worlds,
) -> None:
    world = await worlds.open()
    async with Engine(world, [order]) as engine:
        run_id = await _parked(engine, "a")
    VERSION["v"] = 2  # a deploy that changes the workflow under a run in flight
    world = await worlds.open()
    async with Engine(world, [order]) as engine:
        assert await _status(engine, run_id) is RunStatus.STALLED
        [stalled] = [e for e in await log_of(world, run_id) if isinstance(e, RunStalled)]
        assert stalled.error.name == "NondeterminismError"
        assert stalled.position == 3  # the recorded step_created
        assert stalled.recorded.startswith("step 'stalled.reserve'")
        assert stalled.current.startswith("step 'stalled.notify'")
        assert "run_failed" not in await types_of(world, run_id)
        view = await world.get_run(run_id)
        assert view.error is not None
        assert "Nondeterminism in run order-a" in view.error.message
        # Not driven while stalled: a hook payload is kept, nothing else happens.
        await engine.resume_hook("go:a", "now")
        await asyncio.sleep(0)
        assert await _status(engine, run_id) is RunStatus.STALLED
        assert (await types_of(world, run_id))[-1] == "hook_received"
    VERSION["v"] = 1  # the rollback
    world = await worlds.open()
    async with Engine(world, [order]) as engine:
        run = await engine.get_run(run_id)
        assert await result_of(run) == "reserved a now"
        types = await types_of(world, run_id)
        assert types.count("run_stalled") == 1
        assert types.count("run_unstalled") == 1


async def test_unstall_replays_a_stalled_run_in_a_running_engine(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [order]) as engine:
        run_id = await _parked(engine, "b")
        VERSION["v"] = 2
        engine.evict()
        await engine.raise_event(run_id, "poke")  # wakes the run: rebuilt from its log
        async with asyncio.timeout(WAIT):
            while await _status(engine, run_id) is not RunStatus.STALLED:
                await world.wait_for_run(run_id, after_seq=(await world.get_run(run_id)).last_seq)
        # Still the changed code: it stays stalled, with no second run_stalled.
        assert await engine.unstall(run_id) is RunStatus.STALLED
        assert (await types_of(world, run_id)).count("run_stalled") == 1
        VERSION["v"] = 1
        assert await engine.unstall(run_id) is RunStatus.RUNNING
        await engine.resume_hook("go:b", "then")
        assert await result_of(await engine.get_run(run_id)) == "reserved b then"


async def test_failing_a_stalled_run_is_an_explicit_call(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [order]) as engine:
        run_id = await _parked(engine, "c")
        with pytest.raises(EntityConflictError, match="not stalled"):
            await engine.fail(run_id)
    VERSION["v"] = 2
    world = await worlds.open()
    async with Engine(world, [order]) as engine:
        run = await engine.get_run(run_id)
        assert await run.status() is RunStatus.STALLED
        await run.fail("the old code is gone")
        with pytest.raises(WorkflowFailedError) as caught:
            await result_of(run)
        assert caught.value.error_name == "NondeterminismError"
        assert "the old code is gone" in str(caught.value)


async def test_runs_of_workflows_no_engine_has_are_reported(
    worlds: Worlds, caplog: pytest.LogCaptureFixture
) -> None:
    world = await worlds.open()
    # A run of a workflow that was renamed or removed since: no code of that name exists.
    created = RunCreated(run_id="gone-1", workflow_name="stalled.renamed_away", input=NULL)
    await world.append("gone-1", [created, RunStarted(run_id="gone-1")])
    with caplog.at_level(logging.WARNING, logger="worldflow.engine"):
        async with Engine(world, [other]):
            pass
    [record] = [r for r in caplog.records if "gone-1" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "'stalled.renamed_away'" in record.getMessage()
    assert (await world.get_run("gone-1")).status is RunStatus.RUNNING
