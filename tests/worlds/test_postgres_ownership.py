"""Engine leases across two world instances on one schema (standing in for two processes):
a live engine's runs are its own, its lease expires on the database's clock, and the
instance that held it, with its overlay still naming the old owner, is refused after the
takeover in the statement that would have stored its decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.worlds import postgres_db
from tests.worlds.test_postgres_world import Pair, raw
from worldflow.errors import OwnershipLostError, RunOwnedElsewhereError
from worldflow.worlds import (
    Fence,
    RunCreated,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepStarted,
    WorkflowRun,
)
from worldflow.worlds._postgres import PostgresWorld

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with postgres_db.fresh_schema() as url, postgres_db.two_worlds(url) as worlds:
        yield worlds


def step(run_id: str, step_id: str) -> list[StepCreated | StepStarted]:
    return [
        StepCreated(run_id=run_id, correlation_id=step_id, step_name="s", input=raw(b"0")),
        StepStarted(run_id=run_id, correlation_id=step_id),
    ]


async def unowned(world: PostgresWorld, run_id: str) -> None:
    created = RunCreated(run_id=run_id, workflow_name="wf", input=raw(b"1"))
    await world.append(run_id, [created, RunStarted(run_id=run_id)])


async def test_an_engine_lease_holds_its_runs_until_it_expires(pair: Pair) -> None:
    a, b = pair
    ea = (await a.register_engine(workflows=["wf"], ttl=1.0)).engine_id
    eb = (await b.register_engine(workflows=["wf"], ttl=30.0)).engine_id
    created = RunCreated(run_id="orun_1", workflow_name="wf", input=raw(b"1"))
    first = await a.append(
        "orun_1", [created, RunStarted(run_id="orun_1")], fence=Fence(engine_id=ea, epoch=0)
    )
    assert (first.run.owner_id, first.run.owner_epoch) == (ea, 1)  # claimed by creating it
    old = Fence(engine_id=ea, epoch=1)
    await a.append("orun_1", step("orun_1", "s1"), fence=old)  # A's overlay: owned by ea
    # While ea is live its run is nobody else's: not an orphan, and B's decisions are refused.
    assert await b.claim_orphans(eb, workflows=["wf"], limit=10) == []
    with pytest.raises(RunOwnedElsewhereError):
        await b.append("orun_1", step("orun_1", "s2"), fence=Fence(engine_id=eb, epoch=0))
    # ea stops heartbeating: once its lease is out (the database's clock), B takes the run.
    claimed: list[WorkflowRun] = []
    for _ in range(200):  # a bound that only stops a broken build from hanging
        claimed = await b.claim_orphans(eb, workflows=["wf"], limit=10)
        if claimed:
            break
        await asyncio.sleep(0.1)
    [run] = claimed
    assert (run.run_id, run.owner_id, run.owner_epoch) == ("orun_1", eb, 2)
    with pytest.raises(OwnershipLostError):
        await a.heartbeat(ea)
    # A still caches the run as ea's: its decision under the old fence is refused by the
    # statement itself; a result of an attempt that already ran is accepted from anyone.
    with pytest.raises(RunOwnedElsewhereError):
        await a.append("orun_1", step("orun_1", "s3"), fence=old)
    done = StepCompleted(run_id="orun_1", correlation_id="s1", result=raw(b"7"))
    result = await a.append("orun_1", [done], fence=old)
    assert (result.run.owner_id, result.run.owner_epoch) == (eb, 2)
    await b.append("orun_1", step("orun_1", "s2"), fence=Fence(engine_id=eb, epoch=2))
    events = (await b.list_events("orun_1")).items
    assert [e.type for e in events].count("step_created") == 2  # s1 and B's s2, not A's s3


async def test_two_sweepers_on_two_instances_never_claim_one_run(pair: Pair) -> None:
    a, b = pair
    ea = (await a.register_engine(workflows=["wf"], ttl=30.0)).engine_id
    eb = (await b.register_engine(workflows=["wf"], ttl=30.0)).engine_id
    runs = {f"orun_s{n}" for n in range(24)}
    for run_id in sorted(runs):
        await unowned(a, run_id)
    batches = await asyncio.gather(
        *(
            world.claim_orphans(engine_id, workflows=["wf"], limit=3)
            for _ in range(5)
            for world, engine_id in ((a, ea), (b, eb))
        )
    )
    claimed = [(run.run_id, run.owner_id) for batch in batches for run in batch]
    assert len(claimed) == len({run_id for run_id, _ in claimed}) == len(runs)
    assert {owner for _, owner in claimed} == {ea, eb}  # both swept, neither twice
    for run_id, owner in claimed:
        assert (await b.get_run(run_id)).owner_id == owner
