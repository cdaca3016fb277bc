"""The Dapr workflow API over real sockets: both families of routes, every status and error,
the collision rule, the existing-id rules, metadata headers, and auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.engine.runtime import WAIT, running
from tests.http.dapr_workflows import DAPR_WORKFLOWS
from tests.http.served import Served, serving
from worldflow import Engine
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio

TOKEN = "dapr-secret"
AUTH = {"dapr-api-token": TOKEN}


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(MemoryWorld(), DAPR_WORKFLOWS) as engine:
        yield engine


@pytest.fixture
async def srv(engine: Engine) -> AsyncIterator[Served]:
    async with serving(engine, token=TOKEN) as served:
        yield served


async def call(srv: Served, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
    headers = {**AUTH, **kw.pop("headers", {})}
    async with srv.request(method, path, headers=headers, **kw) as r:
        raw = await r.read()
        body = await r.json() if raw and r.content_type == "application/json" else raw
        return r.status, body, r.headers


async def actors(engine: Engine, run_id: str) -> dict[str, str]:
    """The control events of a run's log and who asked for each."""
    events = (await engine.world.list_events(run_id)).items
    return {e.type: actor for e in events if (actor := getattr(e, "actor", None)) is not None}


async def status_of(srv: Served, path: str) -> str:
    code, body, _ = await call(srv, "GET", path)
    assert code == 200, body
    return str(body["runtimeStatus"])


async def until_status(srv: Served, path: str, wanted: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            code, body, _ = await call(srv, "GET", path)
            if code == 200 and body["runtimeStatus"] == wanted:
                return dict(body)
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("prefix", ["/v1.0", "/v1.0-beta1", "/v1.0-alpha1"])
async def test_daprd_form_lifecycle(srv: Served, engine: Engine, prefix: str) -> None:
    base = f"{prefix}/workflows/dapr"
    code, body, headers = await call(
        srv, "POST", f"{base}/order_wf/start?instanceID=inst-1", json={"item": "pen"}
    )
    assert (code, body) == (202, {"instanceID": "inst-1"})
    assert headers["Location"] == f"{base}/inst-1"
    state = await until_status(srv, f"{base}/inst-1", "RUNNING")
    assert state["instanceID"] == "inst-1"
    assert state["workflowName"] == "order_wf"
    assert state["createdAt"].endswith("Z")
    assert state["properties"]["dapr.workflow.input"] == '{"item":"pen"}'
    assert "dapr.workflow.output" not in state["properties"]
    assert (await call(srv, "POST", f"{base}/inst-1/pause"))[:2] == (202, {})
    assert await status_of(srv, f"{base}/inst-1") == "SUSPENDED"
    # an event raised while suspended waits; resume delivers it
    code, body, _ = await call(srv, "POST", f"{base}/inst-1/raiseEvent/approval", json=True)
    assert (code, body) == (202, {})
    assert (await call(srv, "POST", f"{base}/inst-1/resume"))[:2] == (202, {})
    state = await until_status(srv, f"{base}/inst-1", "COMPLETED")
    assert state["properties"]["dapr.workflow.output"] == (
        '{"order":{"item":"pen"},"decision":true}'
    )
    assert "worldflow.completed_at" in state["properties"]
    # the log says who paused, raised and resumed: the API's token
    assert await actors(engine, "inst-1") == {
        "run_suspended": "api token",
        "event_raised": "api token",
        "run_resumed": "api token",
    }
    # terminate on a finished instance is a no-op, as in daprd
    assert (await call(srv, "POST", f"{base}/inst-1/terminate"))[:2] == (202, {})
    assert (await call(srv, "POST", f"{base}/inst-1/purge"))[:2] == (202, {})
    code, body, _ = await call(srv, "GET", f"{base}/inst-1")
    assert code == 404
    assert body == {
        "errorCode": "ERR_INSTANCE_ID_NOT_FOUND",
        "message": "unable to find workflow with the provided instance ID: inst-1",
    }


async def test_seed_form_lifecycle(srv: Served, engine: Engine) -> None:
    meta = {"dapr-workflow-metadata": "customer=c-7; region=eu"}
    code, body, headers = await call(
        srv,
        "POST",
        "/v1.0/workflows/order_wf/seed-1/start",
        data=b'"a pen"',
        headers={**meta, "dapr-workflow-metadata": "tier=gold"},
    )
    assert (code, body) == (202, {"instanceID": "seed-1"})
    assert headers["Location"] == "/v1.0/workflows/order_wf/seed-1"
    state = await until_status(srv, "/v1.0/workflows/order_wf/seed-1", "RUNNING")
    assert state["properties"]["dapr.workflow.input"] == '"a pen"'
    assert state["properties"]["dapr.workflow.metadata.tier"] == "gold"
    # the metadata is searchable
    page = await engine.list_runs(metadata={"tier": "gold"})
    assert [r.run_id for r in page.items] == ["seed-1"]
    # seed form: any existing id is a conflict
    code, body, _ = await call(srv, "POST", "/v1.0/workflows/order_wf/seed-1/start")
    assert code == 409
    assert body["errorCode"] == "ERR_START_WORKFLOW"
    assert (await call(srv, "POST", "/v1.0/workflows/order_wf/seed-1/suspend"))[0] == 202
    assert await status_of(srv, "/v1.0/workflows/order_wf/seed-1") == "SUSPENDED"
    assert (await call(srv, "POST", "/v1.0/workflows/order_wf/seed-1/resume"))[0] == 202
    # resume of a running instance is a no-op
    assert (await call(srv, "POST", "/v1.0/workflows/order_wf/seed-1/resume"))[0] == 202
    # terminate with a body: it becomes the output
    code, _, _ = await call(
        srv, "POST", "/v1.0/workflows/order_wf/seed-1/terminate", json={"why": "stop"}
    )
    assert code == 202
    state = await until_status(srv, "/v1.0/workflows/order_wf/seed-1", "TERMINATED")
    assert (await actors(engine, "seed-1"))["run_cancelled"] == "api token"
    assert state["properties"]["dapr.workflow.output"] == '{"why":"stop"}'
    # still a conflict once finished, in the seed form
    assert (await call(srv, "POST", "/v1.0/workflows/order_wf/seed-1/start"))[0] == 409
    code, body, _ = await call(srv, "DELETE", "/v1.0/workflows/order_wf/seed-1")
    assert (code, body) == (200, b"")
    assert (await call(srv, "GET", "/v1.0/workflows/order_wf/seed-1"))[0] == 404
    assert (await call(srv, "DELETE", "/v1.0/workflows/order_wf/seed-1"))[0] == 404


async def test_seed_raise_event_by_query_or_envelope(srv: Served) -> None:
    for n, how in enumerate(("query", "envelope")):
        path = f"/v1.0/workflows/order_wf/ev-{n}"
        assert (await call(srv, "POST", f"{path}/start", json=n))[0] == 202
        if how == "query":
            code, _, _ = await call(srv, "POST", f"{path}/raiseEvent?eventName=approval", json="y")
        else:
            envelope = {"eventName": "approval", "eventData": "y"}
            code, _, _ = await call(srv, "POST", f"{path}/raiseEvent", json=envelope)
        assert code == 202
        state = await until_status(srv, path, "COMPLETED")
        assert state["properties"]["dapr.workflow.output"] == f'{{"order":{n},"decision":"y"}}'
    code, body, _ = await call(srv, "POST", "/v1.0/workflows/order_wf/ev-0/raiseEvent", json=1)
    assert code == 400
    assert body["errorCode"] == "ERR_WORKFLOW_EVENT_NAME_MISSING"


async def test_daprd_form_restarts_a_finished_id_but_not_an_active_one(
    srv: Served, engine: Engine
) -> None:
    start = "/v1.0-beta1/workflows/dapr/order_wf/start?instanceID=again"
    get = "/v1.0-beta1/workflows/dapr/again"
    assert (await call(srv, "POST", start, json=1))[0] == 202
    assert (await call(srv, "POST", f"{get}/terminate"))[0] == 202
    await until_status(srv, get, "TERMINATED")
    assert (await call(srv, "POST", start, json=2))[0] == 202  # finished: started anew
    state = await until_status(srv, get, "RUNNING")
    assert state["properties"]["dapr.workflow.input"] == "2"
    assert "dapr.workflow.output" not in state["properties"]
    events = [e.type for e in (await engine.world.list_events("again")).items]
    assert "run_cancelled" not in events  # the old log is gone, not appended to
    active = "/v1.0-beta1/workflows/dapr/order_wf/start?instanceID=busy"
    assert (await call(srv, "POST", active, json=0))[0] == 202
    code, body, _ = await call(srv, "POST", active, json=0)
    assert code == 409
    assert body["errorCode"] == "ERR_START_WORKFLOW"
    assert "active" in body["message"]


async def test_the_collision_rule(srv: Served, engine: Engine) -> None:
    # "dapr" as the first segment: daprd form, the id from the query or a fresh uuid
    code, body, _ = await call(srv, "POST", "/v1.0/workflows/dapr/quick_wf/start")
    assert code == 202
    assert len(body["instanceID"]) == 36
    assert (await engine.get_run(body["instanceID"])) is not None
    # instanceID in the query: daprd form whatever the component is called
    code, body, _ = await call(srv, "POST", "/v1.0/workflows/comp/quick_wf/start?instanceID=q1")
    assert (code, body) == (202, {"instanceID": "q1"})
    # neither, under /v1.0: the seed form (type, id)
    code, body, _ = await call(srv, "POST", "/v1.0/workflows/quick_wf/s1/start")
    assert (code, body) == (202, {"instanceID": "s1"})
    assert (await (await engine.get_run("s1")).info()).workflow_name == "quick_wf"
    # neither, under a beta prefix: the daprd form (the seed only used /v1.0)
    code, body, _ = await call(srv, "POST", "/v1.0-beta1/workflows/comp/quick_wf/start")
    assert code == 202
    assert len(body["instanceID"]) == 36


async def test_failed_runs_report_the_failure(srv: Served) -> None:
    start = "/v1.0/workflows/dapr/failing_wf/start?instanceID=f1"
    assert (await call(srv, "POST", start, data=b"3"))[0] == 202
    state = await until_status(srv, "/v1.0/workflows/dapr/f1", "FAILED")
    props = state["properties"]
    assert props["dapr.workflow.input"] == "3"
    assert "dapr.workflow.output" not in props
    assert props["dapr.workflow.failure.error_type"] == "FatalError"  # the step's own error
    assert "kaboom" in props["dapr.workflow.failure.error_message"]


@pytest.mark.parametrize(
    ("path", "code", "error"),
    [
        ("/v1.0/workflows/dapr/quick_wf/start?instanceID=bad%20id", 400, "ERR_INSTANCE_ID_INVALID"),
        (
            "/v1.0/workflows/dapr/quick_wf/start?instanceID=" + "x" * 65,
            400,
            "ERR_INSTANCE_ID_TOO_LONG",
        ),
        (
            "/v1.0/workflows/dapr/quick_wf/start?instanceID=",
            400,
            "ERR_INSTANCE_ID_PROVIDED_MISSING",
        ),
        ("/v1.0/workflows/dapr/no_such_wf/start?instanceID=n1", 404, "ERR_WORKFLOW_NOT_FOUND"),
        ("/v1.0/workflows/dapr/nope/raiseEvent/e", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("/v1.0/workflows/dapr/nope/pause", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("/v1.0/workflows/dapr/nope/resume", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("/v1.0/workflows/dapr/nope/terminate", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("/v1.0/workflows/dapr/nope/purge", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
    ],
)
async def test_errors_have_dapr_codes(srv: Served, path: str, code: int, error: str) -> None:
    status, body, _ = await call(srv, "POST", path)
    assert status == code
    assert body["errorCode"] == error
    assert body["message"]


async def test_wrong_input_and_conflicts(srv: Served) -> None:
    # quick_wf takes no argument: a body does not fit it
    status, body, _ = await call(
        srv, "POST", "/v1.0/workflows/dapr/quick_wf/start?instanceID=w1", json=5
    )
    assert status == 400
    assert body["errorCode"] == "ERR_MALFORMED_REQUEST"
    w2 = "/v1.0/workflows/dapr/order_wf/start?instanceID=w2"
    assert (await call(srv, "POST", w2, json=0))[0] == 202
    status, body, _ = await call(srv, "POST", "/v1.0/workflows/dapr/w2/purge")
    assert status == 409
    assert body["errorCode"] == "ERR_PURGE_WORKFLOW"
    status, body, _ = await call(
        srv, "POST", "/v1.0/workflows/dapr/w2/start", headers={"dapr-workflow-metadata": "novalue"}
    )
    assert status == 400
    assert "dapr-workflow-metadata" in body["message"]
    await call(srv, "POST", "/v1.0/workflows/dapr/w2/terminate")
    await until_status(srv, "/v1.0/workflows/dapr/w2", "TERMINATED")
    status, body, _ = await call(srv, "POST", "/v1.0/workflows/dapr/w2/raiseEvent/approval")
    assert status == 409
    assert body["errorCode"] == "ERR_RAISE_EVENT_WORKFLOW"


async def test_metadata_and_auth(srv: Served) -> None:
    status, body, _ = await call(srv, "GET", "/v1.0/metadata")
    assert status == 200
    assert body["id"] == "worldflow"
    async with srv.request("GET", "/v1.0/metadata") as r:
        assert r.status == 401
        assert (await r.json())["errorCode"] == "ERR_UNAUTHORIZED"
    async with srv.request("GET", "/v1.0/metadata", headers={"dapr-api-token": "wrong"}) as r:
        assert r.status == 403
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with srv.request("GET", "/v1.0/metadata", headers=bearer) as r:
        assert r.status == 200
    # dapr-api-token is accepted on the Dapr routes only
    async with srv.request("POST", "/api/hooks/resume", json={"token": "x"}, headers=AUTH) as r:
        assert r.status == 401
