"""Several engines and a client on one world: each run is driven by one engine that has its
workflow, and the runs of an engine that dies are finished by another.

One ``MemoryWorld`` object stands in for a shared world; each ``Engine`` on it stands in for
a process. Killing an engine cancels its tasks without any cleanup (no release, no more
heartbeats), which is what the world sees of a process that was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from tests.engine.runtime import WAIT, assert_results_once, wait_for_type
from worldflow import (
    Client,
    Engine,
    OwnershipLostError,
    RunOwnedElsewhereError,
    WorkflowFunction,
    WorkflowNotRegisteredError,
    create_hook,
    sleep,
    step,
    workflow,
)
from worldflow.testing import VirtualClock
from worldflow.worlds import MemoryWorld, RunStatus, StateUpdated

pytestmark = pytest.mark.anyio

TTL = 10.0  # seconds of virtual time
LONG = 3600.0  # virtual seconds: bound on waits for a failover to finish

# -- workflows ---------------------------------------------------------------------------------

ATTEMPTS: Counter[str] = Counter()
"""Attempts per step input, across engines (a step that runs twice shows 2)."""
GATE: dict[str, asyncio.Event] = {}
"""A step with an input named here blocks on its first attempt until the event is set."""
HUNG: dict[str, asyncio.Event] = {}
"""Set when the first attempt of a gated step is hanging."""


@pytest.fixture(autouse=True)
def _reset() -> None:
    ATTEMPTS.clear()
    GATE.clear()
    HUNG.clear()


@step
async def tally(label: str) -> str:
    ATTEMPTS[label] += 1
    gate = GATE.get(label)
    if gate is not None and ATTEMPTS[label] == 1:
        HUNG.setdefault(label, asyncio.Event()).set()
        await gate.wait()  # the first attempt hangs here (until killed, or let go)
    return f"done {label}"


@workflow
async def alpha(n: int) -> str:
    """Alpha: one step."""
    return await tally(f"alpha {n}")


@workflow
async def beta(n: int) -> str:
    """Beta: one step."""
    return await tally(f"beta {n}")


@workflow
async def gamma(n: int) -> str:
    """Gamma: no engine serves it at first."""
    return await tally(f"gamma {n}")


@workflow
async def chain(name: str) -> list[str]:
    """Three steps in a row; the middle one may hang."""
    return [await tally(f"{name} 1"), await tally(f"{name} 2"), await tally(f"{name} 3")]


@workflow
async def napper(name: str) -> str:
    """A step, a long sleep, a step."""
    await tally(f"{name} before")
    await sleep(600)
    return await tally(f"{name} after")


@workflow
async def waiter(token: str) -> Any:
    """Waits for a hook, then records what came in a step."""
    hook = create_hook(token=token)
    payload = await hook
    await tally(f"{token} got {payload}")
    return payload


FAILOVER: list[WorkflowFunction[..., Any]] = [chain, napper, waiter]


async def kill(engine: Engine) -> None:
    """SIGKILL, as the world sees it: every task stops, nothing is released."""
    engine._closing = True  # spawns nothing more: no code of this "process" runs again
    tasks = list(engine._tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def world() -> AsyncIterator[MemoryWorld]:
    world = MemoryWorld(clock=VirtualClock())
    yield world
    await world.aclose()


# -- routing by workflow -----------------------------------------------------------------------


async def test_each_run_is_driven_by_an_engine_that_has_its_workflow() -> None:
    world = MemoryWorld()  # the system clock: queue hand-offs wake at once
    client = Client(world)
    async with Engine(world, [alpha]) as a, Engine(world, [beta]) as b:
        listed = {w.name: w for w in await client.list_workflows()}
        assert listed[alpha.name].engines == (a.engine_id,)
        assert listed[beta.name].engines == (b.engine_id,)
        assert listed[alpha.name].doc == "Alpha: one step."
        assert listed[alpha.name].schema() == {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        }
        runs = [await client.start(alpha, n) for n in range(4)]
        runs += [await client.start(beta.name, n) for n in range(4)]  # by name, no code
        for run in runs:
            assert (await run.result(timeout=WAIT)).startswith("done ")
        for run in runs:
            view = await world.get_run(run.run_id)
            expected = a if view.workflow_name == alpha.name else b
            assert view.owner_id == expected.engine_id, view
        assert all(count == 1 for count in ATTEMPTS.values())
        with pytest.raises(WorkflowNotRegisteredError):
            await client.start("nobody:publishes-this", 1)


async def test_a_workflow_without_an_engine_waits_pending_until_one_comes() -> None:
    world = MemoryWorld()
    client = Client(world)
    async with Engine(world, [alpha]):
        run = await client.start(gamma, 1)  # the client has the code, no engine has
        with pytest.raises(TimeoutError):
            await run.result(timeout=0.2)
        assert await run.status() is RunStatus.PENDING
        assert ATTEMPTS["gamma 1"] == 0
        async with Engine(world, [gamma]) as c:
            assert await run.result(timeout=WAIT) == "done gamma 1"
            assert (await world.get_run(run.run_id)).owner_id == c.engine_id


async def test_a_clean_exit_hands_runs_over_at_once(world: MemoryWorld) -> None:
    client = Client(world)
    first = Engine(world, [waiter], ttl=TTL)
    async with first:
        run = await first.start(waiter, "handover")
        await wait_for_type(run, "hook_created")
    async with Engine(world, [waiter], ttl=TTL) as second:
        assert (await world.get_run(run.run_id)).owner_id == second.engine_id  # claimed on enter
        await client.resume_hook("handover", "hello")
        assert await run.result(timeout=LONG) == "hello"


# -- failover ----------------------------------------------------------------------------------


async def test_a_killed_engines_runs_finish_on_the_survivor(world: MemoryWorld) -> None:
    client = Client(world)
    GATE["stuck 2"] = asyncio.Event()
    HUNG["stuck 2"] = asyncio.Event()
    victim = Engine(world, FAILOVER, ttl=TTL)
    await victim.__aenter__()
    try:
        async with Engine(world, FAILOVER, ttl=TTL) as survivor:
            mid_step = await victim.start(chain, "stuck")
            mid_sleep = await victim.start(napper, "nap")
            on_hook = await victim.start(waiter, "tok-1")
            await wait_for_type(mid_step, "step_started", nth=2)
            await wait_for_type(mid_sleep, "wait_created")
            await wait_for_type(on_hook, "hook_created")
            await HUNG["stuck 2"].wait()  # the hung attempt is under way on the victim
            for run in (mid_step, mid_sleep, on_hook):
                assert (await world.get_run(run.run_id)).owner_id == victim.engine_id
            await kill(victim)
            GATE["stuck 2"].set()  # the survivor's attempt of the hung step goes through
            # The hook is resumed while its owner is dead: the event waits in the log.
            await client.resume_hook("tok-1", "hi")
            assert await mid_step.result(timeout=LONG) == [
                "done stuck 1",
                "done stuck 2",
                "done stuck 3",
            ]
            assert await mid_sleep.result(timeout=LONG) == "done nap after"
            assert await on_hook.result(timeout=LONG) == "hi"
            for run in (mid_step, mid_sleep, on_hook):
                view = await world.get_run(run.run_id)
                assert (view.owner_id, view.owner_epoch) == (survivor.engine_id, 2)
                await assert_results_once(world, run.run_id)
    finally:
        await victim.aclose()
    # the hung attempt ran again on the survivor; nothing that had finished ran twice
    assert (
        Counter(
            {
                "stuck 1": 1,
                "stuck 2": 2,
                "stuck 3": 1,
                "nap before": 1,
                "nap after": 1,
                "tok-1 got hi": 1,
            }
        )
        == ATTEMPTS
    )


async def test_a_paused_zombie_is_fenced_off_after_the_takeover(
    world: MemoryWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worldflow.engine")
    client = Client(world)
    zombie = Engine(world, [waiter], ttl=TTL)
    await zombie.__aenter__()
    try:
        async with Engine(world, [waiter], ttl=TTL) as survivor:
            run = await zombie.start(waiter, "tok-z")
            await wait_for_type(run, "hook_created")
            # Paused (a GC pause, a frozen VM): no heartbeats, but its cache and tasks live on.
            [beat] = [t for t in zombie._tasks if t.get_name() == "worldflow heartbeat"]
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            stale = zombie.owner.fence(run.run_id)
            assert stale is not None
            async with asyncio.timeout(60):  # real seconds; virtual time flies meanwhile
                while (await world.get_run(run.run_id)).owner_id != survivor.engine_id:
                    await world.clock.sleep(TTL)
            # The zombie wakes up: a decision of its own is refused...
            with pytest.raises(RunOwnedElsewhereError):
                await world.append(
                    run.run_id,
                    [StateUpdated(run_id=run.run_id, state=msgspec.Raw(b"1"))],
                    fence=stale,
                )
            with pytest.raises(OwnershipLostError):
                await world.heartbeat(stale.engine_id)
            # ...and driving the run from its cache gets refused and drops it, no retries.
            hook = await world.get_hook_by_token("tok-z")
            await client.resume_hook(hook.token, "late")
            await zombie.driver.drive(run.run_id, fetch=True)
            assert zombie.progress(run.run_id) is None
            assert "no longer driven by this engine" in caplog.text
            assert "driving failed" not in caplog.text  # dropped, not retried
            assert await run.result(timeout=LONG) == "late"
            await assert_results_once(world, run.run_id)
    finally:
        await zombie.aclose()
    assert Counter({"tok-z got late": 1}) == ATTEMPTS
