"""``Client.fork``: a new run that reuses a source run's results before a step and runs that
step again with a new input, on the memory, file and PostgreSQL worlds.

Step calls are counted per process (``CALLS``), so a test can tell a reused result (no call)
from a step that ran again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.runtime import WAIT, log_of, running
from tests.histories.versioning.workflows import pricing_v2
from tests.worlds.factories import WORLD_FACTORIES
from worldflow import (
    Client,
    EntityConflictError,
    RunNotFoundError,
    StepNotFoundError,
    create_hook,
    now,
    step,
    workflow,
)
from worldflow.testing import (
    fetch_history,
    replay,
    resume_hook_when_waiting,
    wait_until_blocked,
)
from worldflow.worlds import (
    ChildEnded,
    HookCreated,
    RunCreated,
    RunStatus,
    StepCompleted,
    StepCreated,
    World,
)
from worldflow.worlds.testing import WorldFactory

pytestmark = pytest.mark.anyio

CALLS: Counter[str] = Counter()


@step
async def fetch(order: str) -> int:
    """The order's amount."""
    CALLS["fetch"] += 1
    return 10 * len(order)


@step
async def charge(amount: int) -> str:
    """Charge ``amount``."""
    CALLS["charge"] += 1
    return f"charged {amount}"


@step
async def notify(text: str) -> str:
    """Tell someone."""
    CALLS["notify"] += 1
    return f"told {text}"


@workflow
async def checkout(order: str) -> list[str]:
    """fetch, then charge what was fetched, then notify."""
    amount = await fetch(order)
    receipt = await charge(amount)
    return [receipt, await notify(receipt)]


@step
async def slow(tag: str, gate: str) -> str:
    """Return ``tag`` once the test opens ``gate`` (immediately if it is not a gate)."""
    CALLS[tag] += 1
    event = GATES.get(gate)
    if event is not None:
        await event.wait()
    return tag


GATES: dict[str, asyncio.Event] = {}


@workflow
async def fan(n: int) -> list[str]:
    """Three steps in one gather, then one more."""
    got = await asyncio.gather(slow("a", "gate-a"), slow("b", "-"), slow("c", "-"))
    return [*got, await slow(f"after-{n}", "-")]


@workflow
async def approval(order: str) -> list[str]:
    """Wait for an approval on a default-token hook, charge an amount made from now() (the
    milliseconds of the approval's time), then notify."""
    decision = await create_hook()
    millis = int(now().timestamp() * 1000) % 100_000
    receipt = await charge(millis + int(decision["amount"]))
    return [receipt, await notify(receipt)]


@workflow
async def priced(order: str) -> int:
    """A child: the amount of ``order``."""
    return await fetch(order)


@workflow
async def family(order: str) -> list[str]:
    """Ask a child workflow for the amount, then charge it and notify."""
    amount = await priced(order)
    receipt = await charge(amount)
    return [receipt, await notify(receipt)]


@pytest.fixture(params=WORLD_FACTORIES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    factory: WorldFactory = request.param
    async with factory(tmp_path) as made:
        yield made


async def test_fork_reuses_steps_before_the_point_and_runs_it_with_a_new_input(
    world: World,
) -> None:
    async with running(world, [checkout]) as engine:
        source = await engine.start(checkout, "abc")
        assert await source.result(timeout=WAIT) == ["charged 30", "told charged 30"]
        before = await log_of(world, source.run_id)
        CALLS.clear()
        fork = await engine.fork(source.run_id, from_step="charge", input={"amount": 7})
        assert await fork.result(timeout=WAIT) == ["charged 7", "told charged 7"]
        assert CALLS == {"charge": 1, "notify": 1}  # fetch's result was reused
        info = await fork.info()
        charge_id = next(
            e.correlation_id
            for e in before
            if isinstance(e, StepCreated) and e.step_name.endswith("charge")
        )
        assert (info.forked_from, info.forked_from_step) == (source.run_id, charge_id)
        assert info.metadata == {}
        # The source is untouched; the lineage is followable from it.
        assert await log_of(world, source.run_id) == before
        forks = await engine.list_runs(forked_from=source.run_id)
        assert [r.run_id for r in forks.items] == [fork.run_id]
        # The fork's log holds the reused result under the fork's own ids.
        log = await log_of(world, fork.run_id)
        reused = next(e for e in log if isinstance(e, StepCompleted))
        assert bytes(reused.result) == b"30"
        assert reused.correlation_id not in {e.correlation_id for e in before}


async def test_a_fork_after_a_child_ended_reuses_its_recorded_outcome(world: World) -> None:
    # The fork's first batch copies the child's outcome under the fork's own child id (which
    # names no run): the world takes it, as its source's record, in that batch only.
    async with running(world, [family, priced]) as engine:
        source = await engine.start(family, "abcd")
        assert await source.result(timeout=WAIT) == ["charged 40", "told charged 40"]
        CALLS.clear()
        fork = await engine.fork(source.run_id, from_step="charge", input={"amount": 5})
        assert await fork.result(timeout=WAIT) == ["charged 5", "told charged 5"]
        assert CALLS == {"charge": 1, "notify": 1}  # no second child: its outcome was reused
        log = await log_of(world, fork.run_id)
        [reused] = [e for e in log if isinstance(e, ChildEnded)]
        assert reused.child_run_id.startswith(f"{fork.run_id}-")
        with pytest.raises(RunNotFoundError):
            await world.get_run(reused.child_run_id)


async def test_a_fork_replays_from_its_own_log_after_the_source_is_purged(
    world: World,
) -> None:
    async with running(world, [checkout]) as engine:
        source = await engine.start(checkout, "abcd")
        await source.result(timeout=WAIT)
        fork = await engine.fork(source.run_id, from_step="charge", input={"amount": 1})
        assert await fork.result(timeout=WAIT) == ["charged 1", "told charged 1"]
        await engine.purge(source.run_id)
    # The fork's own log replays from scratch, without the source.
    replayed = replay(await fetch_history(world, fork.run_id), checkout)
    assert replayed.status is RunStatus.COMPLETED
    assert replayed.output == ["charged 1", "told charged 1"]


async def test_a_parallel_step_that_ended_after_the_point_runs_again_in_the_fork(
    world: World,
) -> None:
    GATES["gate-a"] = asyncio.Event()
    async with running(world, [fan]) as engine:
        source = await engine.start(fan, 1)

        async def finish_a_last() -> None:
            # b and c end first; a (called before b) ends after b's result is in.
            while (await world.get_run(source.run_id)).status is not RunStatus.COMPLETED:
                steps = (await world.list_steps(source.run_id)).items
                if sum(s.status == "completed" for s in steps) >= 2:
                    GATES["gate-a"].set()
                await asyncio.sleep(0.01)

        opener = asyncio.create_task(finish_a_last())
        assert await source.result(timeout=WAIT) == ["a", "b", "c", "after-1"]
        await opener
        steps = (await world.list_steps(source.run_id)).items
        b_id = next(s.step_id for s in steps if b'"b"' in bytes(s.input))
        CALLS.clear()
        fork = await engine.fork(source.run_id, from_step=b_id, input={"tag": "B", "gate": "-"})
        assert await fork.result(timeout=WAIT) == ["a", "B", "c", "after-1"]
        # a was called before b but ended after b's creation (the fork point): its result is
        # not copied, so a runs again (its gate is open now); c was called after b.
        assert CALLS == {"a": 1, "B": 1, "c": 1, "after-1": 1}


async def test_a_fork_sees_the_sources_clock_and_gets_its_own_hook_tokens(
    world: World,
) -> None:
    async with running(world, [approval]) as engine:
        source = await engine.start(approval, "o-1")
        hooks: list[Any] = []
        while not hooks:
            hooks = (await world.list_hooks(run_id=source.run_id)).items
            await asyncio.sleep(0.01)
        await engine.resume_hook(hooks[0].token, {"amount": 5})
        receipt, _ = await source.result(timeout=WAIT)
        await asyncio.sleep(0.01)  # the fork is made at another millisecond than the source
        fork = await engine.fork(source.run_id, from_step="notify", input={"text": "x"})
        # The body computed charge's input from now() after the hook: the fork's replay of
        # that part reads the source's times, so the same input: reused, no divergence.
        assert await fork.result(timeout=WAIT) == [receipt, "told x"]
        created = [e for e in await log_of(world, fork.run_id) if isinstance(e, HookCreated)]
        assert len(created) == 1
        assert created[0].token != hooks[0].token  # its own secret token, not the source's
        # A fork of the fork: its copies carry the first source's times on.
        await asyncio.sleep(0.01)
        again = await engine.fork(fork.run_id, from_step="notify", input={"text": "y"})
        assert await again.result(timeout=WAIT) == [receipt, "told y"]
        assert (await again.info()).forked_from == fork.run_id
        assert replay(await fetch_history(world, again.run_id), approval).output == [
            receipt,
            "told y",
        ]


async def test_a_fork_of_a_patched_run_keeps_the_new_branch(world: World) -> None:
    async with running(world, [pricing_v2]) as engine:
        source = await engine.start(pricing_v2, "kettle")
        await resume_hook_when_waiting(source, "approve:kettle", {"ok": True})
        await resume_hook_when_waiting(source, "delivered:kettle", {"ok": True})
        assert await source.result(timeout=WAIT) == "kettle shipped at 540"
        fork = await engine.fork(
            source.run_id, from_step="golden.ship", input={"item": "kettle", "price": 1}
        )
        await resume_hook_when_waiting(fork, "delivered:kettle", {"ok": True})
        assert await fork.result(timeout=WAIT) == "kettle shipped at 1"
        assert (await world.get_run(fork.run_id)).patches == ["discount"]


async def test_fork_from_the_start_is_a_rerun_with_lineage(world: World) -> None:
    async with running(world, [checkout]) as engine:
        source = await engine.start(checkout, "ab", metadata={"k": "v"})
        await source.result(timeout=WAIT)
        again = await engine.rerun(source.run_id)
        assert await again.result(timeout=WAIT) == ["charged 20", "told charged 20"]
        other = await engine.fork(source.run_id, input={"order": "abcdef"}, run_id="fork-1")
        assert other.run_id == "fork-1"
        assert await other.result(timeout=WAIT) == ["charged 60", "told charged 60"]
        for run in (again, other):
            info = await run.info()
            assert (info.forked_from, info.forked_from_step) == (source.run_id, None)
            assert info.metadata == {"k": "v"}
        listed = await engine.list_runs(forked_from=source.run_id)
        assert {r.run_id for r in listed.items} == {again.run_id, "fork-1"}


async def test_fork_errors_are_typed(world: World) -> None:
    async with running(world, [checkout]) as engine:
        source = await engine.start(checkout, "ab")
        await source.result(timeout=WAIT)
        with pytest.raises(RunNotFoundError):
            await engine.fork("no-such-run", from_step="charge")
        with pytest.raises(StepNotFoundError):
            await engine.fork(source.run_id, from_step="nope")
        with pytest.raises(TypeError, match="input"):
            await engine.fork(source.run_id, from_step="charge", input=[1])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await engine.fork(source.run_id, from_step="charge", input={"wrong": 1})
        await engine.fork(source.run_id, from_step="charge", run_id="taken")
        with pytest.raises(EntityConflictError):
            await engine.fork(source.run_id, from_step="charge", run_id="taken")


async def test_a_client_without_the_code_forks_and_an_engine_drives_the_fork(
    world: World,
) -> None:
    async with running(world, [checkout]) as engine:
        source = await engine.start(checkout, "abc")
        await source.result(timeout=WAIT)
        client = Client(world)
        fork = await client.fork(source.run_id, from_step="charge", input={"amount": 2})
        assert await fork.result(timeout=WAIT) == ["charged 2", "told charged 2"]
        created = (await log_of(world, fork.run_id))[0]
        assert isinstance(created, RunCreated)
        assert created.forked_from == source.run_id


async def test_a_fork_needing_a_token_the_running_source_holds_is_refused(world: World) -> None:
    async with running(world, [pricing_v2]) as engine:
        source = await engine.start(pricing_v2, "desk")
        await resume_hook_when_waiting(source, "approve:desk", {"ok": True})
        await wait_until_blocked(source, hook="delivered:desk")
        # The source waits for "delivered:desk" and still holds "approve:desk", which the
        # fork's copied part would create again.
        with pytest.raises(EntityConflictError, match="approve:desk"):
            await engine.fork(source.run_id, from_step="golden.ship")
        assert [r.run_id for r in (await engine.list_runs(forked_from=source.run_id)).items] == []
        await resume_hook_when_waiting(source, "delivered:desk", {"ok": True})
        await source.result(timeout=WAIT)
        fork = await engine.fork(source.run_id, from_step="golden.ship")
        await resume_hook_when_waiting(fork, "delivered:desk", {"ok": True})
        assert await fork.result(timeout=WAIT) == "desk shipped at 360"
