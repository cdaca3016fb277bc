"""What a client is given of a run's log and of its hooks: decoded values, and one name per
concept (issue #10, "Other defects": ``Run.events()`` and ``get_hook_by_token()`` returned
the world's records, payloads still ``msgspec.Raw``, and a hook record that was not
``worldflow.Hook``)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import result_of, wait_for_type
from worldflow import Engine, EventInfo, HookInfo, create_hook, set_state, step, workflow
from worldflow.worlds import Hook as HookRecord
from worldflow.worlds import HookStatus

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]


@step(name="views.make")
async def make(n: int) -> dict[str, Any]:
    return {"made": [n, n + 1], "note": "é"}


@workflow(name="views.flow")
async def flow(order: dict[str, Any]) -> dict[str, Any]:
    made = await make(order["n"])
    set_state({"stage": "approval"})
    with create_hook(token=f"views:{order['n']}", metadata={"ask": ["yes", "no"]}) as hook:
        answer = await hook
    return {"made": made, "answer": answer}


def _raw_inside(value: object) -> bool:
    if isinstance(value, msgspec.Raw):
        return True
    if isinstance(value, dict):
        return any(_raw_inside(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_raw_inside(v) for v in value)
    return False


async def test_run_events_and_hooks_come_decoded(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [flow]) as engine:
        run = await engine.start(flow, {"n": 4})
        await wait_for_type(run, "hook_created")
        hook = await engine.get_hook_by_token("views:4")
        assert isinstance(hook, HookInfo)
        assert not isinstance(hook, HookRecord)
        assert (hook.run_id, hook.status, hook.metadata) == (
            run.run_id,
            HookStatus.ACTIVE,
            {"ask": ["yes", "no"]},
        )
        resumed = await engine.resume_hook("views:4", {"ok": True})
        assert isinstance(resumed, HookInfo)
        assert (resumed.received_count, resumed.metadata) == (1, {"ask": ["yes", "no"]})
        assert await result_of(run) == {
            "made": {"made": [4, 5], "note": "é"},
            "answer": {"ok": True},
        }
        events = [event async for event in run.events()]
    assert all(isinstance(e, EventInfo) for e in events)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert not [e.type for e in events if _raw_inside(e.data)]
    by_type = {e.type: e for e in events}
    assert by_type["run_created"].data["input"] == {"order": {"n": 4}}
    assert by_type["step_created"].data["input"] == {"n": 4}
    assert by_type["step_completed"].data["result"] == {"made": [4, 5], "note": "é"}
    assert by_type["state_updated"].data["state"] == {"stage": "approval"}
    assert by_type["hook_created"].data["metadata"] == {"ask": ["yes", "no"]}
    assert by_type["hook_created"].data["token"] == "views:4"
    assert by_type["hook_received"].data["payload"] == {"ok": True}
    assert by_type["run_completed"].data["output"]["answer"] == {"ok": True}
    assert by_type["step_completed"].correlation_id == by_type["step_created"].correlation_id
