"""A ``def`` step runs in a thread that cannot be interrupted: it keeps its concurrency slot
until the thread ends, and sees the cancel through ``get_step_metadata().cancelled``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import WAIT, result_of, wait_for_type
from worldflow import Engine, get_step_metadata, step, workflow
from worldflow.worlds import RunStatus

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]

ACTIVE = {"now": 0, "max": 0, "saw_cancel": 0}
LOCK = threading.Lock()
RELEASE = threading.Event()
ENTERED = threading.Event()


@step(name="threads.slow", concurrency=1, max_retries=0)
def slow(key: str) -> str:
    with LOCK:
        ACTIVE["now"] += 1
        ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
    ENTERED.set()
    try:
        if key == "first":
            # Stands in for work that cannot be interrupted; it checks for the cancel.
            while not RELEASE.wait(0.001):
                if get_step_metadata().cancelled:
                    ACTIVE["saw_cancel"] += 1
                    return "gave up"
        elif key == "deaf":
            # Ignores the cancel: runs on (real time) well past its run's end.
            RELEASE.wait(0.5)
        else:
            RELEASE.set()  # on code that freed the slot early, the first thread still runs
        return key
    finally:
        with LOCK:
            ACTIVE["now"] -= 1


@workflow(name="threads.one")
async def one(key: str) -> str:
    return await slow(key)


async def test_a_cancelled_thread_step_holds_its_slot_until_it_ends(worlds: Worlds) -> None:
    ACTIVE.update(now=0, max=0, saw_cancel=0)
    RELEASE.clear()
    ENTERED.clear()
    world = await worlds.open()
    async with Engine(world, [one]) as engine:
        first = await engine.start(one, "first")
        await wait_for_type(first, "step_started")
        async with asyncio.timeout(WAIT):
            await asyncio.to_thread(ENTERED.wait)
        second = await engine.start(one, "second")
        await first.cancel("enough")
        assert await result_of(second) == "second"
        assert await first.status() is RunStatus.CANCELLED
    assert ACTIVE["max"] == 1, "two threads of a concurrency=1 step ran at once"
    assert ACTIVE["saw_cancel"] == 1


async def test_a_thread_that_ignores_the_cancel_keeps_its_slot_past_its_runs_end(
    worlds: Worlds,
) -> None:
    # The world lets a run's concurrency permit go when the run ends; the engine still
    # counts it until the thread returns, so the next run's attempt waits for the thread.
    ACTIVE.update(now=0, max=0, saw_cancel=0)
    RELEASE.clear()
    ENTERED.clear()
    world = await worlds.open()
    async with Engine(world, [one]) as engine:
        deaf = await engine.start(one, "deaf")
        await wait_for_type(deaf, "step_started")
        async with asyncio.timeout(WAIT):
            await asyncio.to_thread(ENTERED.wait)
        second = await engine.start(one, "second")
        await deaf.cancel("enough")
        assert await result_of(second) == "second"
        assert await deaf.status() is RunStatus.CANCELLED
    assert ACTIVE["max"] == 1, "a thread of an ended run lost its concurrency=1 slot"
