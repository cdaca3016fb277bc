"""The Mastra API's raw HTTP shapes, the ones the real client does not look at: framing,
error bodies, idempotent retries, statuses of runs waiting on hooks and events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from tests.http.served import Served, serving
from tests.mastra.workflows import WORKFLOWS
from worldflow import Engine, create_hook, step, wait_for_event, workflow
from worldflow.inspector import CONTROL
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
calls: list[str] = []


@step
async def count(tag: str) -> str:
    calls.append(tag)
    return tag


@workflow(name="hook-wf")
async def hooked(tag: str) -> Any:
    await count(tag)
    return await create_hook(token=f"approve:{tag}")


@workflow(name="event-wf")
async def evented() -> Any:
    return await wait_for_event("go")


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    calls.clear()
    async with (
        MemoryWorld() as world,
        Engine(world, workflows=[*WORKFLOWS, hooked, evented]) as engine,
        serving(engine, token=TOKEN) as s,
    ):
        yield s


async def _post(s: Served, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    data = None if body is None else msgspec.json.encode(body)
    headers = {**AUTH, "content-type": "application/json"}
    async with s.request("POST", path, data=data, headers=headers, **kw) as r:
        return r.status, await r.json(content_type=None)


async def _actors(s: Served, run_id: str) -> dict[str, str]:
    """The control events of a run's log and who asked for each."""
    events = (await s.app[CONTROL].world.list_events(run_id)).items
    return {e.type: actor for e in events if (actor := getattr(e, "actor", None)) is not None}


async def _get(s: Served, path: str) -> tuple[int, Any]:
    async with s.request("GET", path, headers=AUTH) as r:
        return r.status, await r.json(content_type=None)


async def test_stream_is_rs_framed_text(served: Served) -> None:
    body = msgspec.json.encode({"inputData": {"a": 1, "b": 2}})
    path = "/api/workflows/approval-wf/stream?runId=s1"
    headers = {**AUTH, "content-type": "application/json"}
    async with served.request("POST", path, data=body, headers=headers) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        raw = await r.read()
    assert raw.endswith(b"\x1e")
    records = [msgspec.json.decode(part) for part in raw.split(b"\x1e") if part]
    assert records[0] == {
        "type": "workflow-start",
        "runId": "s1",
        "from": "WORKFLOW",
        "payload": {"workflowId": "approval-wf"},
    }
    start = records[1]["payload"]
    assert start["stepName"] == "add"
    assert start["status"] == "running"
    assert isinstance(start["startedAt"], int)
    assert records[2]["payload"]["output"] == {"sum": 3}
    finish = records[-1]
    assert finish["type"] == "workflow-finish"
    assert finish["payload"]["workflowStatus"] == "suspended"
    assert finish["payload"]["output"]["usage"]["totalTokens"] == 0
    # A finished run cannot be streamed again: observe replays it.
    await _post(served, "/api/workflows/approval-wf/resume-async?runId=s1", {
        "step": "approve", "resumeData": {"approved": True},
    })  # fmt: skip
    status, error = await _post(served, path, {"inputData": {"a": 1, "b": 2}})
    assert status == 409
    assert "already finished" in error["error"]


async def test_validation_errors_name_the_field(served: Served) -> None:
    status, body = await _post(served, "/api/workflows/approval-wf/start", {"inputData": {}})
    assert status == 400
    assert body["error"] == "Invalid query parameters"
    assert body["issues"][0]["field"] == "runId"

    status, body = await _post(served, "/api/workflows/approval-wf/start?runId=nope", {})
    assert (status, body) == (404, {"error": "Workflow run not found"})

    status, body = await _get(served, "/api/workflows/approval-wf/runs?perPage=0")
    assert status == 400
    assert body["issues"][0]["field"] == "perPage"

    status, body = await _get(served, "/api/workflows/approval-wf/runs/x?fields=status,bogus")
    assert status == 400
    assert body["issues"][0]["field"] == "fields"
    assert "bogus" in body["issues"][0]["message"]

    headers = {**AUTH, "content-type": "application/json"}
    path = "/api/workflows/approval-wf/start-async?runId=j"
    async with served.request("POST", path, data=b"{nope", headers=headers) as r:
        assert r.status == 400
        body = await r.json()
    assert body["error"] == "Invalid request body"

    status, body = await _post(
        served, "/api/workflows/approval-wf/start-async?runId=k", {"inputData": {"a": 1, "c": 2}}
    )
    assert status == 400
    assert "- b: Invalid input: expected a value, received undefined" in body["error"]
    assert "- c: Unrecognized key" in body["error"]

    async with served.request("GET", "/api/workflows") as r:
        assert r.status == 401


async def test_create_run_takes_an_empty_query_and_repeats_as_a_no_op(served: Served) -> None:
    status, body = await _post(served, "/api/workflows/approval-wf/create-run?", {})
    assert status == 200
    assert len(body["runId"]) == 36  # a UUID, as Mastra makes them
    again = await _post(served, f"/api/workflows/approval-wf/create-run?runId={body['runId']}")
    assert again == (200, body)
    status, state = await _get(served, f"/api/workflows/approval-wf/runs/{body['runId']}")
    assert status == 200
    assert state["status"] == "pending"


async def test_starts_and_resumes_are_idempotent_per_run_id(served: Served) -> None:
    path = "/api/workflows/hook-wf/start-async?runId=h1"
    first = await _post(served, path, {"inputData": {"tag": "h1"}})
    retried = await _post(served, path, {"inputData": {"tag": "h1"}})
    assert first[0] == retried[0] == 200
    assert first[1]["status"] == retried[1]["status"] == "waiting"
    assert calls == ["h1"]  # the retry started nothing

    path = "/api/workflows/approval-wf/start-async?runId=r1"
    status, suspended = await _post(served, path, {"inputData": {"a": 1, "b": 1}})
    assert status == 200
    assert suspended["status"] == "suspended"
    resume = "/api/workflows/approval-wf/resume-async?runId=r1"
    body = {"step": "approve", "resumeData": {"approved": True}}
    once = await _post(served, resume, body)
    twice = await _post(served, resume, body)  # a client retry after a lost answer
    assert once[1]["status"] == twice[1]["status"] == "success"
    assert once[1]["result"] == twice[1]["result"] == {"sum": 2, "approved": True}
    other = await _post(served, resume, {"step": "approve", "resumeData": {"approved": False}})
    assert other == (409, {"error": "This workflow run was not suspended"})
    # the log says who resumed it: the API's token
    assert await _actors(served, "r1") == {"step_resumed": "api token"}


async def test_waiting_on_events_and_failures(served: Served) -> None:
    status, body = await _post(served, "/api/workflows/event-wf/start-async?runId=e1", {})
    assert (status, body["status"]) == (200, "waiting")
    status, body = await _post(
        served, "/api/workflows/failing-wf/start-async?runId=f1", {"inputData": "boom"}
    )
    assert status == 200
    assert body["status"] == "failed"
    assert set(body["error"]) >= {"message", "name"}
    status, listed = await _get(served, "/api/workflows/event-wf/runs?status=waiting")
    assert (status, listed["total"]) == (200, 1)
    status, body = await _post(served, "/api/workflows/approval-wf/runs/e1/cancel")
    assert status == 404  # a run of another workflow
    assert (await _post(served, "/api/workflows/event-wf/runs/e1/cancel"))[0] == 200
    assert await _actors(served, "e1") == {"run_cancelled": "api token"}
    status, listed = await _get(served, "/api/workflows")
    assert set(listed) >= {"approval-wf", "hook-wf", "event-wf"}
    assert "inputSchema" in listed["approval-wf"]
    async with served.request("GET", "/openapi.json", headers=AUTH) as r:
        document = await r.json()
    assert "/api/workflows/{workflowId}/start-async" in document["paths"]


async def test_a_reservation_is_cancelled_or_deleted_only_through_its_own_workflow(
    served: Served,
) -> None:
    status, body = await _post(served, "/api/workflows/approval-wf/create-run", {})
    assert status == 200
    run_id = body["runId"]
    # another workflow's reservation is as unknown to it as a missing run
    status, _ = await _post(served, f"/api/workflows/hook-wf/runs/{run_id}/cancel")
    assert status == 404
    async with served.request("DELETE", f"/api/workflows/hook-wf/runs/{run_id}", headers=AUTH) as r:
        assert r.status == 404
    status, state = await _get(served, f"/api/workflows/approval-wf/runs/{run_id}")
    assert (status, state["status"]) == (200, "pending")  # still reserved for its own
    status, done = await _post(served, f"/api/workflows/approval-wf/runs/{run_id}/cancel")
    assert (status, done) == (200, {"message": "Workflow run cancelled"})
    status, _ = await _get(served, f"/api/workflows/approval-wf/runs/{run_id}")
    assert status == 404
