"""Oversize payloads are refused, never stored (issue #10, "Payloads and ids that break the
engine"): over HTTP every API family answers 413 for a body over the app's limit, in its
own error shape; through the Python API a payload over the world's limit raises
``InvalidEventError`` naming the field and the limit. On the memory and the file world."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import cast

import pytest

from tests.engine.runtime import WAIT, running, wait_for_type
from tests.http.served import Served, serve_app, serving
from tests.worlds.served import Hosting
from worldflow import InvalidEventError, create_hook, workflow
from worldflow.inspector import ControlPlane, create_app
from worldflow.worlds import World
from worldflow.worlds._validation import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.anyio

LIMIT = 1000


@workflow(name="limits.parked")
async def parked(token: str) -> object:
    """Wait on the hook ``token``; return its payload."""
    return await create_hook(token=token)


@pytest.fixture
async def srv(world: World) -> AsyncIterator[Served]:
    async with running(world, [parked]) as engine, serving(engine, max_body_size=LIMIT) as s:
        yield s


_BIG = "x" * (2 * LIMIT)
ROUTES = [
    ("native-hook", "/api/hooks/resume", {"token": "t", "data": _BIG}, "body_too_large"),
    ("dapr-start", "/v1.0/workflows/dapr/limits.parked/start?instanceID=i1", _BIG, "ERR_"),
    ("mastra-start", "/api/workflows/limits.parked/start-async", {"inputData": _BIG}, "error"),
]


@pytest.mark.parametrize(("path", "body", "says"), [pytest.param(*r[1:], id=r[0]) for r in ROUTES])
async def test_a_body_over_the_limit_is_413_in_each_familys_shape(
    srv: Served, world: World, path: str, body: object, says: str
) -> None:
    data = json.dumps(body)
    headers = {"Content-Type": "application/json"}
    async with srv.request("POST", path, data=data, headers=headers) as r:
        text = await r.text()
        assert r.status == 413, text
        assert says in text, text
    assert (await world.list_runs()).items == []


async def test_the_world_api_answers_413_over_its_limit(world: World) -> None:
    control = cast(ControlPlane, Hosting(world))
    app = create_app(control, families=("worldflow.inspector.api.world",), max_body_size=LIMIT)
    event = {"type": "run_created", "run_id": "r", "workflow_name": "wf", "input": _BIG}
    async with (
        serve_app(app) as s,
        s.request(
            "POST",
            "/_world/v1/runs/r/events",
            data=json.dumps({"events": [event]}),
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        text = await r.text()
        assert r.status == 413, text
        assert "body_too_large" in text, text
    assert (await world.list_runs()).items == []


async def test_a_payload_over_the_worlds_limit_is_refused_at_the_call(world: World) -> None:
    huge = "x" * MAX_PAYLOAD_BYTES  # encoded with its quotes and argument name: over
    async with running(world, [parked]) as engine:
        with pytest.raises(InvalidEventError, match=r"field `input` is \d+ bytes encoded; the"):
            await engine.start(parked, huge)
        assert (await engine.list_runs()).items == []
        run = await engine.start(parked, "t-big", run_id="waiting")
        await wait_for_type(run, "hook_created")
        with pytest.raises(InvalidEventError, match=r"field `payload` is \d+ bytes encoded"):
            await engine.resume_hook("t-big", huge)
        del huge
        await engine.resume_hook("t-big", "small")
        assert await run.result(timeout=WAIT) == "small"
