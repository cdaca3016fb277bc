"""Attempts the engine cut short (a clean stop) or lost (a crash) do not use up a step's
retries; lost attempts have their own limit, visible in the step's view and the timeline."""

from __future__ import annotations

import asyncio

import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import WAIT, log_of, result_of, types_of, wait_for_type
from worldflow import (
    Engine,
    WorkflowFailedError,
    build_timeline,
    get_step_metadata,
    step,
    workflow,
)
from worldflow.worlds import StepStarted, StepStatus, World

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]

GATE: dict[str, asyncio.Event] = {}
ENTERED: dict[str, asyncio.Event] = {}
RAN: list[str] = []
ATTEMPTS: list[int] = []  # get_step_metadata().attempt of each run of attempts.once


@step(name="attempts.once", max_retries=0)
async def once(key: str) -> str:
    RAN.append(key)
    ATTEMPTS.append(get_step_metadata().attempt)
    if key in ENTERED:
        ENTERED[key].set()
    gate = GATE.get(key)
    if gate is not None:
        await gate.wait()  # hangs in the first engine (no gate is ever set)
    return f"done {key}"


@step(name="attempts.fragile", max_retries=0, max_lost_attempts=1)
async def fragile(key: str) -> str:
    RAN.append(key)
    if key in ENTERED:
        ENTERED[key].set()
    gate = GATE.get(key)
    if gate is not None:
        await gate.wait()
    return f"done {key}"


@workflow(name="attempts.deploy")
async def deploy(key: str) -> str:
    return await once(key)


@workflow(name="attempts.crashy")
async def crashy(key: str) -> str:
    return await fragile(key)


async def _hang(engine: Engine, wf: object, key: str) -> str:
    GATE[key] = asyncio.Event()
    ENTERED[key] = asyncio.Event()
    run = await engine.start(wf, key)  # type: ignore[arg-type]
    await wait_for_type(run, "step_started")
    async with asyncio.timeout(WAIT):
        await ENTERED[key].wait()
    return run.run_id


async def _lose_attempts(world: World, run_id: str, times: int) -> None:
    """What crashes leave behind: the attempt started again, with no outcome recorded."""
    [started] = [e for e in await log_of(world, run_id) if isinstance(e, StepStarted)]
    again = StepStarted(run_id=run_id, correlation_id=started.correlation_id)
    for _ in range(times):
        await world.append(run_id, [again])


async def test_a_clean_stop_does_not_use_up_a_retry(worlds: Worlds) -> None:
    RAN.clear()
    ATTEMPTS.clear()
    world = await worlds.open()
    async with Engine(world, [deploy]) as engine:
        run_id = await _hang(engine, deploy, "a")
    assert "step_interrupted" in await types_of(world, run_id)
    del GATE["a"]  # the new engine's attempt finishes
    world = await worlds.open()
    async with Engine(world, [deploy]) as engine:
        run = await engine.get_run(run_id)
        assert await result_of(run) == "done a"
    [view] = (await world.list_steps(run_id)).items
    assert (view.attempt, view.interrupted_attempts, view.lost_attempts) == (2, 1, 0)
    assert RAN == ["a", "a"]
    assert ATTEMPTS == [1, 1]  # the attempt the stop cut short is not counted
    lines = [e.text for e in build_timeline(await log_of(world, run_id))]
    assert any("attempt interrupted (the engine stopped; not counted)" in t for t in lines)


async def test_attempts_lost_to_crashes_have_their_own_limit(worlds: Worlds) -> None:
    RAN.clear()
    world = await worlds.open()
    async with Engine(world, [crashy, deploy]) as engine:
        ok_id = await _hang(engine, deploy, "b")  # max_retries=0, 3 lost attempts allowed
        bad_id = await _hang(engine, crashy, "c")  # max_retries=0, 1 lost attempt allowed
    # After the engine's stop (step_interrupted), starts with no outcome: the first finds
    # the step pending, each later one finds the attempt before it lost, and so does the
    # restart's own start.
    await _lose_attempts(world, ok_id, 2)
    await _lose_attempts(world, bad_id, 3)
    del GATE["b"], GATE["c"]
    world = await worlds.open()
    async with Engine(world, [crashy, deploy]) as engine:
        ok = await engine.get_run(ok_id)
        assert await result_of(ok) == "done b"
        bad = await engine.get_run(bad_id)
        with pytest.raises(WorkflowFailedError, match="lost 3 attempts to crashes"):
            await result_of(bad)
    [view] = (await world.list_steps(bad_id)).items
    assert view.status is StepStatus.FAILED
    assert view.lost_attempts == 3
    assert view.error is not None
    assert "max_lost_attempts=1" in view.error.message
    lines = [e.text for e in build_timeline(await log_of(world, ok_id))]
    assert any("the previous attempt was lost" in t for t in lines)
