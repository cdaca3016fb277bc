"""Every HTTP API applies the one id rule of the worlds (issue #10, "Payloads and ids that
break the engine"): a run id, instance id, step id or hook token that is empty of meaning
(control characters, over 255 characters, percent-escapes that are not UTF-8) is a 400 that
names the parameter, on reads as on writes, in each family's own error shape; and nothing is
stored. Over real sockets, on the memory and the file world."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.engine.runtime import running
from tests.http.served import Served, serving
from tests.worlds.served import served
from worldflow import create_hook, workflow
from worldflow.worlds import World
from worldflow.worlds._ids import MAX_ID_LENGTH

pytestmark = pytest.mark.anyio


@workflow(name="ids.parked")
async def parked(token: str) -> object:
    """Wait on the hook ``token``."""
    return await create_hook(token=token)


# (case, as it goes in a URL, what the message says)
BAD_IDS = [
    ("newline", "a%0Ab", "at position 1"),
    ("nul", "a%00b", "at position 1"),
    ("del", "a%7Fb", "at position 1"),
    ("too-long", "r" * (MAX_ID_LENGTH + 1), "the limit is 255"),
    ("not-utf-8", "a%ED%A0%80b", "not UTF-8"),
]

DAPR = "/v1.0/workflows/dapr"
MASTRA = "/api/workflows/ids.parked"
# (family, method, URL with {bad}, field the 400 names, how the body says it)
ROUTES = [
    ("dapr-start", "POST", DAPR + "/ids.parked/start?instanceID={bad}", "query.instanceID"),
    ("dapr-get", "GET", DAPR + "/{bad}", "path.id"),
    ("dapr-terminate", "POST", DAPR + "/{bad}/terminate", "path.id"),
    ("dapr-raise", "POST", DAPR + "/{bad}/raiseEvent/go", "path.id"),
    ("mastra-start", "POST", MASTRA + "/start-async?runId={bad}", "query.runId"),
    ("mastra-get", "GET", MASTRA + "/runs/{bad}", "path.runId"),
    ("mastra-cancel", "POST", MASTRA + "/runs/{bad}/cancel", "path.runId"),
    ("native-rerun", "POST", "/api/runs/{bad}/rerun", "path.runId"),
    ("native-resume-step", "POST", "/api/runs/ok/steps/{bad}/resume", "path.step"),
    ("inspector-page", "GET", "/runs/{bad}", "path.run_id"),
    ("inspector-cancel", "POST", "/runs/{bad}/cancel", "path.run_id"),
]


@pytest.fixture
async def srv(world: World) -> AsyncIterator[Served]:
    async with running(world, [parked]) as engine, serving(engine) as served_app:
        yield served_app


@pytest.mark.parametrize(("case", "bad", "says"), BAD_IDS, ids=[c for c, _, _ in BAD_IDS])
@pytest.mark.parametrize(
    ("method", "url", "field"),
    [pytest.param(m, u, f, id=i) for i, m, u, f in ROUTES],
)
async def test_every_api_refuses_an_id_that_breaks_the_rule(
    srv: Served, world: World, case: str, bad: str, says: str, method: str, url: str, field: str
) -> None:
    body = json.dumps({"inputData": {"token": "t"}} if "mastra" in url else "t")
    headers = {"Content-Type": "application/json"}
    async with srv.request(method, url.format(bad=bad), data=body, headers=headers) as r:
        text = await r.text()
        assert r.status == 400, text
    named = "URL" if case == "not-utf-8" else field
    assert named in text, text
    assert says in text, text
    assert (await world.list_runs()).items == []


# What daprd answers for each case (http-apis.md B.4); the URL that is not UTF-8 is no id.
DAPR_CODES = {
    "newline": "ERR_INSTANCE_ID_INVALID",
    "nul": "ERR_INSTANCE_ID_INVALID",
    "del": "ERR_INSTANCE_ID_INVALID",
    "too-long": "ERR_INSTANCE_ID_TOO_LONG",
    "not-utf-8": "ERR_MALFORMED_REQUEST",
}
NATIVE_CODES = {"too-long": "id_too_long", "not-utf-8": "invalid_request"}


@pytest.mark.parametrize(("case", "bad", "says"), BAD_IDS, ids=[c for c, _, _ in BAD_IDS])
@pytest.mark.parametrize(
    ("method", "url"),
    [pytest.param(m, u, id=i) for i, m, u, _ in ROUTES if i.startswith(("dapr", "native"))],
)
async def test_the_id_rule_answers_in_each_familys_own_error_code(
    srv: Served, case: str, bad: str, says: str, method: str, url: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with srv.request(method, url.format(bad=bad), data='"t"', headers=headers) as r:
        assert r.status == 400, await r.text()
        body = await r.json()
    if url.startswith(DAPR):
        assert body["errorCode"] == DAPR_CODES[case], body
    else:
        assert body["code"] == NATIVE_CODES.get(case, "invalid_id"), body


@pytest.mark.parametrize(("case", "bad", "says"), BAD_IDS, ids=[c for c, _, _ in BAD_IDS])
async def test_a_hook_token_that_breaks_the_rule_is_a_400(
    srv: Served, case: str, bad: str, says: str
) -> None:
    if case == "not-utf-8":  # in a JSON body: a lone surrogate escape, refused as JSON
        raw = b'{"token": "a\\ud800b", "data": 1}'
    else:
        token = bad.replace("%0A", "\n").replace("%00", "\0").replace("%7F", "\x7f")
        raw = json.dumps({"token": token, "data": 1}).encode()
    async with srv.request(
        "POST", "/api/hooks/resume", data=raw, headers={"Content-Type": "application/json"}
    ) as r:
        text = await r.text()
        assert r.status == 400, text
        assert ("body" if case == "not-utf-8" else "token") in text, text


@pytest.mark.parametrize(("case", "bad", "says"), BAD_IDS, ids=[c for c, _, _ in BAD_IDS])
async def test_the_world_api_refuses_a_write_with_such_a_run_id_naming_the_field(
    world: World, case: str, bad: str, says: str
) -> None:
    import aiohttp

    async with served(world) as url, aiohttp.ClientSession() as session:
        run_id = "ok" if case == "not-utf-8" else bad
        events = {
            "events": [{"type": "run_created", "run_id": "x", "workflow_name": "wf", "input": None}]
        }
        body = json.dumps(events).replace('"run_id": "x"', '"run_id": "RID"')
        if case == "not-utf-8":
            body = body.replace("RID", "a\\ud800b")
        else:
            plain = bad.replace("%0A", "\\n").replace("%00", "\\u0000").replace("%7F", "\\u007f")
            body = body.replace("RID", plain)
        async with session.post(
            f"{url}/_world/v1/runs/{run_id}/events",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as r:
            text = await r.text()
            assert r.status == 400, text
            # a lone surrogate escape is not JSON msgspec reads: the body is refused whole
            assert ("JSON" if case == "not-utf-8" else "field `run_id`") in text, text
        # a read answers as a local world's does: such an id names no run
        async with session.get(f"{url}/_world/v1/runs/{bad}") as r:
            assert r.status == 404, await r.text()
    assert (await world.list_runs()).items == []
