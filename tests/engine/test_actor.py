"""Who did it: every control verb records its ``actor`` in the event it appends, refuses a bad
one before writing, and logs recorded before the field existed still decode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.engine.runtime import WAIT, log_of, running
from worldflow import create_hook, wait_for_event, workflow
from worldflow.testing import wait_until_blocked
from worldflow.worlds import MemoryWorld, RunCancelled, decode_event

pytestmark = pytest.mark.anyio


@workflow(name="tests.actor.waiter")
async def waiter() -> Any:
    got = await wait_for_event("go")
    hooked = await create_hook(token="actor:approve")
    return [got, hooked]


@pytest.fixture
async def world() -> AsyncIterator[MemoryWorld]:
    world = MemoryWorld()
    yield world
    await world.aclose()


async def test_each_control_verb_records_its_actor(world: MemoryWorld) -> None:
    async with running(world, [waiter]) as engine:
        run = await engine.start(waiter)
        await wait_until_blocked(run, event="go")
        await engine.suspend(run.run_id, "look", actor="ann")
        await engine.resume(run.run_id, actor="bo")
        await engine.raise_event(run.run_id, "go", 1, actor="cy")
        await wait_until_blocked(run, hook="actor:approve")
        await engine.resume_hook("actor:approve", 2, actor="di")
        assert await run.result(timeout=WAIT) == [1, 2]
        again = await engine.rerun(run.run_id, actor="ed")
        await wait_until_blocked(again, event="go")
        with pytest.raises(ValueError, match="actor"):
            await engine.cancel(again.run_id, actor="two\nlines")
        with pytest.raises(TypeError, match="actor"):
            await engine.cancel(again.run_id, actor=7)  # type: ignore[arg-type]
        await engine.cancel(again.run_id, "dup", actor="  fay  ")
        actors = {
            e.type: getattr(e, "actor", None)
            for e in [*await log_of(world, run.run_id), *await log_of(world, again.run_id)]
            if getattr(e, "actor", None)
        }
        assert actors == {
            "run_suspended": "ann",
            "run_resumed": "bo",
            "event_raised": "cy",
            "hook_received": "di",
            "run_created": "ed",
            "run_cancelled": "fay",
        }


def test_a_control_event_recorded_before_actor_existed_decodes() -> None:
    old = (
        b'{"type":"run_cancelled","run_id":"wrun_1","seq":3,"event_id":"evnt_1",'
        b'"created_at":"2026-01-01T00:00:00Z","correlation_id":null,"reason":"dup","output":null}'
    )
    event = decode_event(old)
    assert isinstance(event, RunCancelled)
    assert event.actor is None
    assert event.reason == "dup"
