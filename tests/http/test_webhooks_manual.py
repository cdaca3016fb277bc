"""Manual-response webhooks and ``webhook.url`` over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.engine.runtime import WAIT, running, wait_for_type
from tests.http.served import serving
from worldflow import (
    Engine,
    WebhookRequest,
    WebhookResponse,
    create_webhook,
    step,
    workflow,
)
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio


@step
async def answer(request: WebhookRequest) -> None:
    """Answer the caller with what it sent, upper-cased."""
    await request.respond_with(WebhookResponse.json({"echo": request.text().upper()}, status=201))


@workflow
async def echo() -> str:
    """Answer one manual webhook request from a step."""
    request: WebhookRequest = await create_webhook(respond_with="manual")
    await answer(request)
    return request.text()


@workflow
async def silent() -> str:
    """Take a manual webhook request and finish without answering."""
    request: WebhookRequest = await create_webhook(respond_with="manual")
    return request.method


@workflow
async def slow() -> None:
    """Take a manual webhook request, then wait forever without answering."""
    hook = create_webhook(respond_with="manual")
    await hook
    await create_webhook()


@workflow
async def with_url() -> str:
    """Return the webhook's URL."""
    hook = create_webhook()
    return hook.url


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(MemoryWorld(), [echo, silent, slow, with_url]) as engine:
        yield engine


async def _token(engine: Engine, run_id: str) -> str:
    hooks = [h for h in (await engine.world.list_hooks()).items if h.run_id == run_id]
    return hooks[0].token


async def test_a_step_answers_the_caller(engine: Engine) -> None:
    run = await engine.start(echo)
    await wait_for_type(run, "hook_created")
    token = await _token(engine, run.run_id)
    async with (
        serving(engine) as srv,
        srv.request("POST", f"/.well-known/workflow/v1/webhook/{token}", data=b"hi") as r,
    ):
        assert r.status == 201
        assert await r.json() == {"echo": "HI"}
    assert await run.result(timeout=WAIT) == "hi"


async def test_a_run_ending_without_answering_is_502_at_once(engine: Engine) -> None:
    run = await engine.start(silent)
    await wait_for_type(run, "hook_created")
    token = await _token(engine, run.run_id)
    async with (
        serving(engine, webhook_timeout=WAIT * 3) as srv,  # 502 comes long before this
        srv.request("PUT", f"/.well-known/workflow/v1/webhook/{token}") as r,
    ):
        assert r.status == 502
        assert (await r.json())["code"] == "webhook_not_answered"
    assert await run.result(timeout=WAIT) == "PUT"


async def test_no_answer_in_time_is_504(engine: Engine) -> None:
    run = await engine.start(slow)
    await wait_for_type(run, "hook_created")
    token = await _token(engine, run.run_id)
    async with (
        serving(engine, webhook_timeout=0.2) as srv,
        srv.request("POST", f"/.well-known/workflow/v1/webhook/{token}") as r,
    ):
        assert r.status == 504
        body = await r.json()
        assert body["code"] == "webhook_timeout"
        assert "respond_with" in body["message"]


async def test_webhook_url_comes_from_the_base_url(engine: Engine) -> None:
    async with serving(engine, base_url="https://example.com/wf/"):
        run = await engine.start(with_url)
        url = await run.result(timeout=WAIT)
    prefix = "https://example.com/wf/.well-known/workflow/v1/webhook/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert token
    assert "/" not in token


async def test_respond_with_refuses_outside_a_manual_webhook() -> None:
    with pytest.raises(RuntimeError, match="manual"):
        await WebhookRequest().respond_with(WebhookResponse())
    with pytest.raises(TypeError, match="WebhookResponse"):
        await WebhookRequest(reply_to="x").respond_with("nope")  # type: ignore[arg-type]
