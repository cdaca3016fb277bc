"""``patched()`` / ``deprecate_patch()``: changing a workflow that has runs in flight.

The histories under ``tests/histories/versioning/`` were recorded with the workflow *before*
the change (``pricing_v1``, ``fanout_v1``) and after it (``*-v2-*``); the tests replay them
against each later version, and restore the in-flight ones into a memory and a file world
(same seqs and times) for an engine running the new code to finish.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import WAIT, log_of, result_of, types_of
from tests.histories.versioning import workflows as wf
from tests.properties.checks import check_prefixes
from tests.properties.checks import replay as replay_instance
from worldflow import (
    Engine,
    NotInWorkflowError,
    WorkflowFailedError,
    deprecate_patch,
    patched,
    workflow,
)
from worldflow.testing import (
    ReplayDivergenceError,
    load_history,
    replay,
    resume_hook_when_waiting,
)
from worldflow.worlds import AnyEvent, PatchMarked, RunStatus, World

__all__ = ["worlds"]

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parents[1] / "histories" / "versioning"
UNSTAMPED = datetime(1970, 1, 1, tzinfo=UTC)  # what an append leaves for the world to stamp


def history(name: str) -> list[AnyEvent]:
    return load_history(HERE / f"{name}.jsonl")


async def restore(worlds: Worlds, world: World, events: list[AnyEvent]) -> str:
    """Write a recorded log into ``world`` as it was stored: the same seqs and times (the
    world's virtual clock is moved to each event's time before its append)."""
    for event in events:
        if event.created_at > worlds.clock.now():
            await worlds.clock.advance_to(event.created_at)
        unstamped = msgspec.structs.replace(event, seq=0, event_id="", created_at=UNSTAMPED)
        await world.append(event.run_id, [unstamped])
    restored = (await world.list_events(events[0].run_id)).items
    assert [(e.seq, e.created_at, e.type) for e in restored] == [
        (e.seq, e.created_at, e.type) for e in events
    ]
    return events[0].run_id


async def until_status(world: World, run_id: str, status: RunStatus) -> None:
    async with asyncio.timeout(WAIT):
        while (view := await world.get_run(run_id)).status is not status:
            await world.wait_for_run(run_id, after_seq=view.last_seq)


# -- the recorded histories against each version --------------------------------------------


def test_a_history_recorded_before_the_patch_takes_the_old_branch() -> None:
    events = history("pricing-v1-completed")
    assert not any(isinstance(e, PatchMarked) for e in events)
    result = replay(events, wf.pricing_v2)
    assert result.status is RunStatus.COMPLETED
    assert result.output == "kettle shipped at 600"  # no discount: the old branch
    assert result.commands == []  # and no marker owed


def test_the_same_change_without_patched_does_not_replay_old_runs() -> None:
    with pytest.raises(ReplayDivergenceError) as caught:
        replay(history("pricing-v1-completed"), wf.pricing_naive)
    assert "golden.discount" in str(caught.value)
    assert "golden.ship" in str(caught.value)


def test_a_history_recorded_with_the_patch_replays_on_v2_and_after_deprecation() -> None:
    events = history("pricing-v2-completed")
    assert [e.name for e in events if isinstance(e, PatchMarked)] == ["discount"]
    for version in (wf.pricing_v2, wf.pricing_v3):
        result = replay(events, version)
        assert result.output == "kettle shipped at 540"
        assert result.commands == []


def test_deprecate_patch_is_for_when_no_old_run_is_left() -> None:
    # deprecate_patch keeps only the new code: a run recorded without the marker diverges.
    with pytest.raises(ReplayDivergenceError):
        replay(history("pricing-v1-completed"), wf.pricing_v3)


def test_every_prefix_of_the_histories_rebuilds_to_the_same_state() -> None:
    for name, version in [
        ("pricing-v1-completed", wf.pricing_v2),
        ("pricing-v2-completed", wf.pricing_v2),
        ("pricing-v2-completed", wf.pricing_v3),
        ("fanout-v1-completed", wf.fanout_v2),
        ("fanout-v2-completed", wf.fanout_v2),
    ]:
        events = history(name)
        instance, whole = replay_instance(version.definition, events)
        instance.close()
        assert whole.commands == [], name
        check_prefixes(version.definition, events, whole, strict_commands=False)


# -- gather / create_task --------------------------------------------------------------------


def test_tasks_of_a_gather_share_one_decision_and_one_marker() -> None:
    new = history("fanout-v2-completed")
    # Three tasks asked, at different points of their progress: one marker, first in the
    # batch of the idle point where the first task asked (before any step was created).
    assert [e.type for e in new[:4]] == [
        "run_created",
        "run_started",
        "patch_marked",
        "step_created",
    ]
    assert sum(isinstance(e, PatchMarked) for e in new) == 1
    assert replay(new, wf.fanout_v2).output == [["a99"], ["b0", "b99"], ["c0", "c1", "c99"]]
    # Recorded before the patch: every task takes the old branch, even those that ask after
    # the replay went past the point where the first one asked.
    old = history("fanout-v1-completed")
    assert replay(old, wf.fanout_v2).output == [[], ["b0"], ["c0", "c1"]]


async def test_a_gather_run_live_asks_once_per_run(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [wf.fanout_v2]) as engine:
        run = await engine.start(wf.fanout_v2, 3)
        assert await result_of(run) == [
            ["a99"],
            ["b0", "b99"],
            ["c0", "c1", "c2", "c99"],
        ]
        log = await log_of(world, run.run_id)
        assert [e.name for e in log if isinstance(e, PatchMarked)] == ["fast-path"]
        assert (await world.get_run(run.run_id)).patches == ["fast-path"]


# -- runs in flight at the deploy, on memory and file ----------------------------------------


async def test_a_run_in_flight_past_the_change_finishes_on_the_old_branch(
    worlds: Worlds,
) -> None:
    world = await worlds.open()
    run_id = await restore(worlds, world, history("pricing-v1-delivering"))
    wf.CALLS.clear()
    async with Engine(world, [wf.pricing_v2]) as engine:
        await engine.resume_hook("delivered:desk", {"ok": True})
        run = await engine.get_run(run_id)
        assert await result_of(run) == "desk shipped at 400"
        assert wf.CALLS == {}  # every step was recorded already: nothing ran again
        assert "patch_marked" not in await types_of(world, run_id)
        # A new run of the same code takes the new branch and records why.
        new = await engine.start(wf.pricing_v2, "desk")
        await resume_hook_when_waiting(new, "approve:desk", {"ok": True})
        await resume_hook_when_waiting(new, "delivered:desk", {"ok": True})
        assert await result_of(new) == "desk shipped at 360"
        assert (await world.get_run(new.run_id)).patches == ["discount"]


async def test_a_run_in_flight_before_the_change_takes_the_new_branch(
    worlds: Worlds,
) -> None:
    world = await worlds.open()
    run_id = await restore(worlds, world, history("pricing-v1-approving"))
    async with Engine(world, [wf.pricing_v2]) as engine:
        run = await engine.get_run(run_id)
        await resume_hook_when_waiting(run, "approve:lamp", {"ok": True})
        await resume_hook_when_waiting(run, "delivered:lamp", {"ok": True})
        # It reached patched() live, after the deploy: the new code, and the marker.
        assert await result_of(run) == "lamp shipped at 360"
        assert (await world.get_run(run_id)).patches == ["discount"]


async def test_a_run_stalled_by_the_change_goes_on_once_patched_code_is_deployed(
    worlds: Worlds,
) -> None:
    world = await worlds.open()
    run_id = await restore(worlds, world, history("pricing-v1-delivering"))
    async with Engine(world, [wf.pricing_naive]) as engine:  # the change, without patched()
        await until_status(world, run_id, RunStatus.STALLED)  # its replay at the start
        stalled = (await world.get_run(run_id)).error
        assert stalled is not None
        assert "golden.ship" in stalled.message
        await engine.resume_hook("delivered:desk", {"ok": True})  # kept, not driven
        assert (await world.get_run(run_id)).status is RunStatus.STALLED
    world = await worlds.open()
    async with Engine(world, [wf.pricing_v2]) as engine:  # the same change behind patched()
        run = await engine.get_run(run_id)
        assert await result_of(run) == "desk shipped at 400"
        types = await types_of(world, run_id)
        assert types.count("run_stalled") == 1
        assert types.count("run_unstalled") == 1
        assert "patch_marked" not in types


# -- the primitives --------------------------------------------------------------------------


@workflow(name="versioning.loop")
async def looped(n: int) -> list[bool]:
    answers = [patched("loop-patch") for _ in range(n)]
    deprecate_patch("gone")
    deprecate_patch("gone")
    return answers


async def test_a_patch_is_asked_many_times_and_recorded_once(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [looped]) as engine:
        run = await engine.start(looped, 3)
        assert await result_of(run) == [True, True, True]
        log = await log_of(world, run.run_id)
        assert [e.name for e in log if isinstance(e, PatchMarked)] == ["loop-patch", "gone"]


def test_patched_outside_a_workflow_and_bad_names_are_refused() -> None:
    with pytest.raises(NotInWorkflowError):
        patched("x")
    with pytest.raises(NotInWorkflowError):
        deprecate_patch("x")


@workflow(name="versioning.badname")
async def bad_name() -> bool:
    return patched("")


async def test_an_empty_patch_name_fails_the_run_with_a_message(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [bad_name]) as engine:
        run = await engine.start(bad_name)
        with pytest.raises(WorkflowFailedError, match="patch name"):
            await result_of(run)
