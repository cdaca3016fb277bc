"""Hooks and webhooks: payload delivery, buffering, iteration, disposal, conflicts."""

from __future__ import annotations

from typing import Any

from tests.engine.history import History
from worldflow import (
    HookConflictError,
    HookNotFoundError,
    WebhookRequest,
    WebhookResponse,
    _serde,
    create_hook,
    create_webhook,
    step,
    workflow,
)
from worldflow._webhooks import WebhookSpec, is_manual, response_for, user_metadata
from worldflow.worlds import HookCreated, HookReceived


@step
async def note(x: Any) -> Any:
    return x


def test_await_a_hook_for_one_payload() -> None:
    @workflow
    async def approval(order_id: str) -> Any:
        hook = create_hook(token=f"approve:{order_id}", metadata={"who": "ops"})
        return await hook

    h = History(approval, "o-1")
    created = h.events[-1]
    assert isinstance(created, HookCreated)
    assert created.token == "approve:o-1"
    assert _serde.decode(created.metadata) == {"who": "ops"}
    assert h.progress.blocked_on == ["hook approve:o-1"]
    h.resume_hook("approve:o-1", {"ok": True})
    assert h.result == {"ok": True}


def test_payloads_sent_before_the_await_are_kept_in_order() -> None:
    @workflow
    async def collect() -> list[Any]:
        hook = create_hook(token="t")
        await note("registered")  # payloads arrive while the body waits for this step
        got = [await hook]
        async for payload in hook:
            got.append(payload)
            if len(got) == 3:
                hook.dispose()
        return got

    h = History(collect)
    h.resume_hook("t", 1)
    h.resume_hook("t", 2)
    h.run_steps()
    assert h.progress.blocked_on == ["hook t"]
    h.resume_hook("t", 3)
    assert h.result == [1, 2, 3]
    assert h.types()[-2:] == ["hook_disposed", "run_completed"]


def test_async_iteration_ends_when_the_hook_is_disposed_from_another_task() -> None:
    @workflow
    async def stream() -> list[Any]:
        hook = create_hook(token="s")
        seen: list[Any] = []
        async for payload in hook:
            seen.append(payload)
            if payload == "stop":
                hook.dispose()
        try:
            await hook
        except HookNotFoundError as exc:
            seen.append(str(exc))
        return seen

    h = History(stream)
    h.resume_hook("s", "a")
    h.resume_hook("s", "stop")
    assert h.result[:2] == ["a", "stop"]
    assert "was disposed" in h.result[2]


def test_default_tokens_are_seeded_by_the_run() -> None:
    @workflow
    async def tokens() -> list[str]:
        return [create_hook().token, create_hook().token]

    a = History(tokens)
    b = History(tokens, run_id="wrun_b")
    assert a.result != b.result
    assert len(set(a.result)) == 2
    assert all(len(t) == 26 for t in a.result)
    # a replay draws the same tokens: check_replay compared the outputs already; again here:
    _, progress = a.replay()
    assert progress.finished


def test_hook_conflict_raises_at_the_await_and_the_body_can_go_on() -> None:
    @workflow
    async def claim() -> Any:
        try:
            return await create_hook(token="taken")
        except HookConflictError as exc:
            fallback = create_hook(token="mine")
            return [str(exc), await fallback]

    h = History(claim, taken_tokens={"taken": "wrun_other"})
    assert h.types()[-2:] == ["hook_conflict", "hook_created"]
    assert h.progress.blocked_on == ["hook mine"]
    h.resume_hook("mine", 7)
    message, value = h.result
    assert "'taken' is already used" in message
    assert "wrun_other" in message
    assert value == 7


def test_webhook_payload_is_a_request_and_respond_with_is_in_the_metadata() -> None:
    reply = WebhookResponse(status=200, body=b"thanks")

    @workflow
    async def hooked() -> list[Any]:
        hook = create_webhook(respond_with=reply, metadata={"k": 1})
        request: WebhookRequest = await hook
        return [hook.is_webhook, hook.metadata, request.method, request.json()]

    h = History(hooked)
    created = h.events[-1]
    assert isinstance(created, HookCreated)
    assert created.is_webhook
    assert response_for(created.metadata) == reply
    assert user_metadata(created.metadata, is_webhook=True) == {"k": 1}
    request = WebhookRequest(method="POST", path="/hooks/x", body=b'{"n": 5}')
    h.send(
        HookReceived(
            run_id=h.run_id,
            correlation_id=created.correlation_id,
            payload=_serde.encode(request),
        )
    )
    assert h.result == [True, {"k": 1}, "POST", {"n": 5}]


def test_webhook_metadata_is_stored_as_a_tagged_struct() -> None:
    @workflow
    async def manual() -> Any:
        hook = create_webhook(respond_with="manual", metadata=[1, 2])
        return await hook

    created = History(manual).events[-1]
    assert isinstance(created, HookCreated)
    assert _serde.decode(created.metadata) == WebhookSpec(respond_with="manual", metadata=[1, 2])
    assert is_manual(created.metadata)
    assert response_for(created.metadata) == WebhookResponse()  # the default until answered


def test_webhook_metadata_written_before_the_struct_is_still_read() -> None:
    # The shape of tests/histories/hooks.jsonl: a plain dict with the two keys.
    legacy = _serde.encode(
        {"respond_with": WebhookResponse(status=200, body=b"thanks"), "metadata": {"k": 1}}
    )
    assert response_for(legacy) == WebhookResponse(status=200, body=b"thanks")
    assert not is_manual(legacy)
    assert user_metadata(legacy, is_webhook=True) == {"k": 1}
    assert is_manual(_serde.encode({"respond_with": "manual", "metadata": None}))
    # A plain hook's metadata is the user's, whatever keys it has.
    assert user_metadata(legacy, is_webhook=False) == {
        "respond_with": WebhookResponse(status=200, body=b"thanks"),
        "metadata": {"k": 1},
    }
    # A junk answer in a damaged record falls back to the default, never raises.
    junk = _serde.encode({"respond_with": 5, "metadata": None})
    assert response_for(junk) == WebhookResponse()


def test_hook_used_as_a_context_manager_is_disposed_on_exit() -> None:
    @workflow
    async def scoped() -> Any:
        with create_hook(token="ctx") as hook:
            value = await hook
        return value

    h = History(scoped)
    h.resume_hook("ctx", "v")
    assert h.result == "v"
    assert "hook_disposed" in h.types()


def test_hook_disposed_before_it_was_recorded_is_never_created() -> None:
    @workflow
    async def fleeting() -> str:
        create_hook(token="gone").dispose()
        return "ok"

    h = History(fleeting)
    assert h.result == "ok"
    assert "hook_created" not in h.types()
    assert "hook_disposed" not in h.types()
