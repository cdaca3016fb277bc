"""A dropped workflow instance is freed by reference counting, not by the cyclic collector.

An instance, its loop, its operations and their futures used to point at each other (bound
methods, ``future.watched``, the loop's task list), so every run's instance, finished or
evicted, waited for the collector's oldest generation, and each collection walked it: GC
traversal was a measurable share of a step's CPU. ``WorkflowInstance.close`` now breaks those
cycles. These tests run with the collector off and check that the instance is gone as soon as
the engine drops it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from tests.engine.runtime import WAIT, wait_for
from worldflow import Engine, create_hook, sleep, step, workflow
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio


@step
async def double(x: int) -> int:
    return 2 * x


@workflow
async def busy(x: int) -> int:
    """A step, an asyncio timeout (a durable timer handle), a hook and a sleep."""
    y = await double(x)
    hook = create_hook(token=f"freed:{x}")
    async with asyncio.timeout(3600):
        payload: int = await hook
    await sleep(0.001)
    return y + payload


@pytest.fixture
def no_collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _instance_ref(engine: Engine, run_id: str) -> weakref.ref[object]:
    instance = engine.driver.cache.slots[run_id].instance
    assert instance is not None
    return weakref.ref(instance)


async def test_a_finished_runs_instance_is_freed_at_once(no_collector: None) -> None:
    async with Engine(MemoryWorld(), [busy]) as engine:
        run = await engine.start(busy, 4)
        await wait_for(run, lambda e: e.type == "hook_created")
        ref = _instance_ref(engine, run.run_id)
        await engine.resume_hook("freed:4", 1)
        assert await run.result(timeout=WAIT) == 9
        assert run.run_id not in engine.driver.cached_runs()
        assert ref() is None, gc.get_referrers(ref())


async def test_an_evicted_waiting_instance_is_freed_at_once(no_collector: None) -> None:
    async with Engine(MemoryWorld(), [busy]) as engine:
        run = await engine.start(busy, 5)
        await wait_for(run, lambda e: e.type == "hook_created")
        ref = _instance_ref(engine, run.run_id)
        assert engine.evict(run.run_id) == 1  # closed mid-wait: its body is cancelled
        assert ref() is None, gc.get_referrers(ref())
        # The run goes on from its log with a new instance.
        await engine.resume_hook("freed:5", 2)
        assert await run.result(timeout=WAIT) == 12
