"""worldflow.testing on a real engine: virtual time, waiting on runs, fake steps, fixtures."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from worldflow import (
    Engine,
    FatalError,
    RetryableError,
    StepNotRegisteredError,
    WorkflowFailedError,
    create_hook,
    sleep,
    step,
    wait_for_event,
    workflow,
)
from worldflow.testing import (
    DEFAULT_START,
    VirtualClock,
    memory_engine,
    override_step,
    raise_event_when_waiting,
    resume_hook_when_waiting,
    skip_sleep,
    wait_until_blocked,
)
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio

_gates: list[asyncio.Event] = []


def new_gate() -> asyncio.Event:
    """The event slow_reserve waits for (one per test: an Event belongs to one loop)."""
    _gates[:] = [asyncio.Event()]
    return _gates[0]


@step(name="testing.charge")
async def charge(order_id: str, cents: int) -> str:
    return f"receipt-{order_id}-{cents}"


@step(name="testing.slow_reserve")
async def slow_reserve(order_id: str) -> str:
    if _gates:
        await _gates[0].wait()
    return f"reserved-{order_id}"


@step(name="testing.ship")
def ship(order_id: str) -> str:
    time.sleep(0.01)  # a blocking call: sync steps run in a worker thread
    return f"shipped-{order_id}"


@workflow(name="testing.order")
async def order(order_id: str) -> dict[str, Any]:
    receipt = await charge(order_id, 1999)
    await sleep("2d")
    approval = await create_hook(token=f"approve:{order_id}")
    try:
        tracking = await wait_for_event("carrier", timeout="7d")
    except TimeoutError:
        tracking = None
    return {"receipt": receipt, "approval": approval, "tracking": tracking}


@workflow(name="testing.reserve_then_ship")
async def reserve_then_ship(order_id: str) -> list[str]:
    return [await slow_reserve(order_id), await ship(order_id)]


@workflow(name="testing.child")
async def child_flow(x: int) -> int:
    await sleep("1h")
    return x * 10


@workflow(name="testing.parent")
async def parent_flow(x: int) -> int:
    return await child_flow(x) + 1


async def test_days_of_sleep_take_milliseconds() -> None:
    started = time.perf_counter()
    async with memory_engine([order]) as engine:
        run = await engine.start(order, "o-1")
        await resume_hook_when_waiting(run, "approve:o-1", {"ok": True})
        result = await run.result(timeout=30 * 86400)
        assert result == {"receipt": "receipt-o-1-1999", "approval": {"ok": True}, "tracking": None}
        assert engine.clock.now() == DEFAULT_START + timedelta(days=9)
    assert time.perf_counter() - started < 2.0


async def test_wait_until_blocked_on_each_kind_of_thing() -> None:
    clock = VirtualClock(auto_advance=False)
    async with memory_engine([order], clock=clock) as engine:
        run = await engine.start(order, "o-2")
        blocked = await wait_until_blocked(run, sleep=True)
        assert blocked.blocked_on == ["sleep until 2024-01-03T00:00:00Z"]
        assert blocked.waits[0][1] == DEFAULT_START + timedelta(days=2)
        assert await skip_sleep(run, clock) == DEFAULT_START + timedelta(days=2)
        blocked = await wait_until_blocked(run, hook="approve:o-2")
        assert blocked.blocked_on == ["hook approve:o-2"]
        await engine.resume_hook("approve:o-2", "yes")
        await raise_event_when_waiting(run, "carrier", "1Z999")
        assert (await run.result(timeout=5))["tracking"] == "1Z999"


async def test_wait_until_blocked_on_a_running_step_by_short_name() -> None:
    gate = new_gate()
    async with memory_engine([reserve_then_ship]) as engine:
        run = await engine.start(reserve_then_ship, "o-3")
        blocked = await wait_until_blocked(run, step="slow_reserve")
        assert blocked.blocked_on == ["step testing.slow_reserve"]
        assert len(blocked.pending_steps) == 1
        gate.set()
        assert await run.result(timeout=5) == ["reserved-o-3", "shipped-o-3"]


async def test_waiting_for_something_a_run_never_reaches_fails_clearly() -> None:
    async with memory_engine([order]) as engine:
        run = await engine.start(order, "o-4")
        with pytest.raises(TimeoutError, match=r"not blocked on hook 'other'.*hook approve:o-4"):
            await wait_until_blocked(run, hook="other", timeout=0.05)
        await engine.resume_hook("approve:o-4", None)
        with pytest.raises(AssertionError, match=r"ended \(completed\) before it was blocked"):
            await wait_until_blocked(run, hook="other")
        with pytest.raises(TypeError, match="one of"):
            await wait_until_blocked(run, hook="a", event="b")


async def test_override_step_runs_the_fake_and_then_the_real_one_again() -> None:
    async with memory_engine([order]) as engine:
        calls: list[tuple[str, int]] = []

        async def declined(order_id: str, cents: int) -> str:
            calls.append((order_id, cents))
            raise FatalError("card declined")

        with override_step(engine, charge, declined) as fake:
            assert fake.name == "testing.charge"
            assert fake.options == charge.definition.options
            run = await engine.start(order, "o-5")
            with pytest.raises(WorkflowFailedError, match="card declined"):
                await run.result(timeout=60)
        assert calls == [("o-5", 1999)]
        run = await engine.start(order, "o-6")
        await resume_hook_when_waiting(run, "approve:o-6", True)
        assert (await run.result(timeout=30 * 86400))["receipt"] == "receipt-o-6-1999"


async def test_override_step_by_name_with_a_sync_function_and_retries() -> None:
    attempts: list[int] = []

    def flaky(order_id: str) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RetryableError("try again", retry_after=timedelta(hours=1))
        return f"fake-shipped-{order_id}"

    _gates.clear()
    async with memory_engine([reserve_then_ship]) as engine:
        with override_step(engine, "testing.ship", flaky):
            run = await engine.start(reserve_then_ship, "o-7")
            assert await run.result(timeout=86400) == ["reserved-o-7", "fake-shipped-o-7"]
        assert len(attempts) == 3
        assert engine.clock.now() == DEFAULT_START + timedelta(hours=2)  # two backoffs


async def test_override_of_an_unknown_step_is_refused() -> None:
    async with memory_engine() as engine:
        with (
            pytest.raises(StepNotRegisteredError, match="no step is registered as 'nope'"),
            override_step(engine, "nope", lambda: None),
        ):
            pass


async def test_child_workflows_run_on_the_virtual_clock() -> None:
    async with memory_engine([parent_flow, child_flow]) as engine:
        run = await engine.start(parent_flow, 4)
        assert await run.result(timeout=7200) == 41
        assert engine.clock.now() >= DEFAULT_START + timedelta(hours=1)


async def test_the_pytest_fixtures(
    worldflow_engine: Engine, worldflow_clock: VirtualClock, worldflow_world: MemoryWorld
) -> None:
    assert worldflow_engine.world is worldflow_world
    assert worldflow_engine.clock is worldflow_clock
    run = await worldflow_engine.start(order, "o-8")
    await resume_hook_when_waiting(run, "approve:o-8", 1)
    await raise_event_when_waiting(run, "carrier", "x")
    assert (await run.result(timeout=30 * 86400))["tracking"] == "x"
    assert worldflow_clock.now() == DEFAULT_START + timedelta(days=2)
