"""The app's skeleton over real sockets: /healthz, auth, errors, body limits, the JSON
hook route, webhooks, /openapi.json, mounting under a prefix."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.engine.runtime import WAIT, running, wait_for_type
from tests.http.served import serve_app, serving
from worldflow import Engine, WebhookRequest, WebhookResponse, create_hook, create_webhook, workflow
from worldflow.inspector import create_app, route
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@workflow
async def parked(token: str) -> object:
    """Wait on the hook ``token``; return its payload."""
    return await create_hook(token=token)


@workflow
async def hooked() -> list[object]:
    """Wait for one request on a default webhook and one on a fixed-answer webhook."""
    default = create_webhook()
    fixed = create_webhook(respond_with=WebhookResponse(status=200, body=b"thanks"))
    first: WebhookRequest = await default
    second: WebhookRequest = await fixed
    return [first.method, first.query, first.header("x-kind"), first.body.decode(), second.method]


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(MemoryWorld(), [parked, hooked]) as engine:
        yield engine


async def test_healthz_is_public_and_ready(engine: Engine) -> None:
    async with serving(engine, token=TOKEN) as srv, srv.request("GET", "/healthz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ok"}


async def test_healthz_says_503_before_the_engine_is_entered() -> None:
    idle = Engine(MemoryWorld(), [parked])
    async with serving(idle) as srv, srv.request("GET", "/healthz") as r:
        assert r.status == 503
        assert (await r.json())["status"] == "starting"


async def test_auth_401_without_403_wrong_200_right(engine: Engine) -> None:
    body = {"token": "nope", "data": 1}
    async with serving(engine, token=TOKEN) as srv:
        async with srv.request("POST", "/api/hooks/resume", json=body) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert (await r.json())["code"] == "unauthorized"
        for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer"):
            headers = {"Authorization": wrong}
            async with srv.request("POST", "/api/hooks/resume", json=body, headers=headers) as r:
                assert r.status == 403, wrong
                assert (await r.json())["code"] == "forbidden"
        async with srv.request("POST", "/api/hooks/resume", json=body, headers=AUTH) as r:
            assert r.status == 404  # past auth: the token is unknown
        async with srv.request("GET", "/openapi.json") as r:
            assert r.status == 401
        async with srv.request("GET", "/no/such/route") as r:
            assert r.status == 401  # unknown paths do not leak past auth


async def test_without_a_token_configured_routes_are_open(engine: Engine) -> None:
    async with (
        serving(engine) as srv,
        srv.request("POST", "/api/hooks/resume", json={"token": "nope"}) as r,
    ):
        assert r.status == 404
        assert (await r.json())["code"] == "hook_not_found"


async def test_resume_hook_by_token(engine: Engine) -> None:
    run = await engine.start(parked, "approve:1")
    await wait_for_type(run, "hook_created")
    async with serving(engine, token=TOKEN) as srv:
        body = {"token": "approve:1", "data": {"ok": True}}
        async with srv.request("POST", "/api/hooks/resume", json=body, headers=AUTH) as r:
            assert r.status == 200
            assert await r.json() == {"runId": run.run_id}
        assert await run.result(timeout=WAIT) == {"ok": True}
        async with srv.request("POST", "/api/hooks/resume", json=body, headers=AUTH) as r:
            assert r.status == 404  # the hook is gone with its run


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        (b"{not json", "body", "not valid JSON"),
        (b"", "body", "empty"),
        (b'{"data": 1}', "body.token", "missing required field"),
        (b'{"token": 5}', "body.token", "Expected `str`"),
        (b"[1, 2]", "body", "Expected `object`"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    engine: Engine, data: bytes, field: str, fragment: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    async with (
        serving(engine, token=TOKEN) as srv,
        srv.request("POST", "/api/hooks/resume", data=data, headers=headers) as r,
    ):
        assert r.status == 400
        error = await r.json()
        assert error["code"] == "invalid_request"
        assert error["field"] == field
        assert fragment in error["message"]


async def test_bodies_over_the_limit_are_413(engine: Engine) -> None:
    big = b'{"token": "' + b"x" * 2000 + b'"}'
    async with serving(engine, token=TOKEN, max_body_size=1000) as srv:
        async with srv.request("POST", "/api/hooks/resume", data=big, headers=AUTH) as r:
            assert r.status == 413
            assert (await r.json())["code"] == "body_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 200

        async with srv.request("POST", "/api/hooks/resume", data=chunks(), headers=AUTH) as r:
            assert r.status == 413
        path = "/.well-known/workflow/v1/webhook/whatever"
        async with srv.request("POST", path, data=b"x" * 5000) as r:
            assert r.status == 413


async def test_unknown_route_and_wrong_method(engine: Engine) -> None:
    async with serving(engine) as srv:
        async with srv.request("GET", "/nope") as r:
            assert r.status == 404
            assert (await r.json())["code"] == "not_found"
        async with srv.request("GET", "/api/hooks/resume") as r:
            assert r.status == 405
            assert (await r.json())["code"] == "method_not_allowed"


async def test_an_unexpected_exception_is_500_with_a_logged_id(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    @route(tags=("test",))
    async def broken(request: web.Request) -> web.Response:
        """Always fails."""
        raise KeyError("the bug")

    app = create_app(engine)
    app.router.add_get("/broken", broken)
    with caplog.at_level(logging.ERROR, logger="worldflow.inspector"):
        async with serve_app(app) as srv, srv.request("GET", "/broken") as r:
            assert r.status == 500
            error = await r.json()
    assert error["code"] == "internal_error"
    assert error["errorId"] in error["message"]
    assert "the bug" not in error["message"]  # no internals leak to the caller
    logged = [rec for rec in caplog.records if error["errorId"] in rec.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


async def test_webhooks_default_and_fixed_responses(engine: Engine) -> None:
    run = await engine.start(hooked)
    await wait_for_type(run, "hook_created", nth=2)
    hooks = sorted((await engine.world.list_hooks()).items, key=lambda h: h.created_at)
    default, fixed = (h.token for h in hooks)
    async with serving(engine, token=TOKEN) as srv:  # no credentials: webhooks are public
        path = f"/.well-known/workflow/v1/webhook/{default}?a=1&a=2"
        async with srv.request("PUT", path, data=b"hi", headers={"X-Kind": "k"}) as r:
            assert r.status == 202
            assert await r.read() == b""
        async with srv.request("GET", f"/.well-known/workflow/v1/webhook/{fixed}") as r:
            assert r.status == 200
            assert await r.read() == b"thanks"
        assert await run.result(timeout=WAIT) == ["PUT", {"a": "2"}, "k", "hi", "GET"]
        async with srv.request("POST", f"/.well-known/workflow/v1/webhook/{default}") as r:
            assert r.status == 404  # the run is over: its webhooks are gone


async def test_webhook_404_for_unknown_and_for_plain_hooks(engine: Engine) -> None:
    run = await engine.start(parked, "plain-token")
    await wait_for_type(run, "hook_created")
    async with serving(engine) as srv:
        for token in ("unknown", "plain-token"):
            async with srv.request("POST", f"/.well-known/workflow/v1/webhook/{token}") as r:
                assert r.status == 404
                assert (await r.json())["code"] == "hook_not_found"


async def test_head_and_options_do_not_resume_unless_asked(engine: Engine) -> None:
    run = await engine.start(hooked)
    await wait_for_type(run, "hook_created", nth=2)
    hooks = sorted((await engine.world.list_hooks()).items, key=lambda h: h.created_at)
    path = f"/.well-known/workflow/v1/webhook/{hooks[0].token}"
    async with serving(engine) as srv:
        for method in ("HEAD", "OPTIONS"):
            async with srv.request(method, path) as r:
                assert r.status == 204
                assert "POST" in r.headers["Allow"]
        async with srv.request("OPTIONS", "/.well-known/workflow/v1/webhook/nope") as r:
            assert r.status == 404
        hook = await engine.get_hook_by_token(hooks[0].token)
        assert hook.received_count == 0
    async with serving(engine, webhook_resume_on_head_options=True) as srv:
        async with srv.request("OPTIONS", path) as r:
            assert r.status == 202
        hook = await engine.get_hook_by_token(hooks[1].token)  # the run moved on
        assert hook.received_count == 0


async def test_mounted_under_a_prefix(engine: Engine) -> None:
    run = await engine.start(parked, "mounted")
    await wait_for_type(run, "hook_created")
    parent = web.Application()
    parent.add_subapp("/wf/", create_app(engine, token=TOKEN))
    async with serve_app(parent) as srv:
        async with srv.request("GET", "/wf/healthz") as r:
            assert r.status == 200
        body: dict[str, Any] = {"token": "mounted", "data": 7}
        async with srv.request("POST", "/wf/api/hooks/resume", json=body) as r:
            assert r.status == 401
        async with srv.request("POST", "/wf/api/hooks/resume", json=body, headers=AUTH) as r:
            assert r.status == 200
        async with srv.request("GET", "/wf/openapi.json", headers=AUTH) as r:
            doc = await r.json()
        assert "/wf/api/hooks/resume" in doc["paths"]
    assert await run.result(timeout=WAIT) == 7


async def test_openapi_document_is_generated_from_the_types(engine: Engine) -> None:
    async with (
        serving(engine, token=TOKEN) as srv,
        srv.request("GET", "/openapi.json", headers=AUTH) as r,
    ):
        assert r.status == 200
        doc = await r.json()
    assert doc["openapi"] == "3.1.0"
    op = doc["paths"]["/api/hooks/resume"]["post"]
    body_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = doc["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert body["required"] == ["token"]
    assert set(op["responses"]) >= {"200", "400", "401", "403", "404", "413"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    webhook = doc["paths"]["/.well-known/workflow/v1/webhook/{token}"]
    assert {"get", "post", "put", "patch", "delete", "options"} <= set(webhook)


def test_public_surface_of_the_inspector_package() -> None:
    import worldflow.inspector

    assert worldflow.inspector.__all__ == [
        "AUTH_CHECKS",
        "CONTROL",
        "FAMILIES",
        "SETTINGS",
        "ControlPlane",
        "ErrorShape",
        "Problem",
        "RequestError",
        "RouteSpec",
        "Settings",
        "create_app",
        "json_body",
        "query_params",
        "read_body",
        "route",
    ]
