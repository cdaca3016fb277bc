"""Login, sessions and the actions: each refused without a session, a CSRF token or this
origin, and in read-only mode; each doing what it says with them."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.inspector import flows
from tests.inspector.conftest import TOKEN, client_for, ui_app
from worldflow import Engine
from worldflow.testing import wait_until_blocked
from worldflow.worlds import RunStatus

pytestmark = pytest.mark.anyio

Client = TestClient[Any, Any]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def origin(client: Client) -> dict[str, str]:
    return {"Origin": f"http://{client.host}:{client.port}"}


async def login(client: Client) -> None:
    resp = await client.post(
        "/login",
        data={"token": TOKEN, "next": "/"},
        headers=origin(client),
        allow_redirects=False,
    )
    assert resp.status == 303


async def test_pages_redirect_to_login_and_the_token_logs_in(authed: Client) -> None:
    resp = await authed.get("/runs/x?tab=1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/login?next=")
    wrong = await authed.post("/login", data={"token": "guess"}, allow_redirects=False)
    assert wrong.status == 401
    assert "worldflow_session" not in wrong.cookies
    good = await authed.post(
        "/login", data={"token": TOKEN, "next": "/hooks"}, allow_redirects=False
    )
    assert good.status == 303
    assert good.headers["Location"] == "/hooks"
    cookie = good.cookies["worldflow_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert (await authed.get("/", allow_redirects=False)).status == 200
    # an open redirect is not possible
    evil = await authed.post(
        "/login", data={"token": TOKEN, "next": "https://evil.example/"}, allow_redirects=False
    )
    assert evil.headers["Location"] == "/"


async def test_actions_and_live_streams_refused_without_a_session(
    engine: Engine, authed: Client
) -> None:
    run = await engine.start(flows.order, "a-1", run_id="a-1")
    await wait_until_blocked(run, hook="approve:a-1")
    for url in (
        "/runs/a-1/cancel",
        "/runs/a-1/suspend",
        "/hooks/resolve",
        "/runs/a-1/rerun",
        "/runs/a-1/wake",
        "/runs/a-1/retry-now",
    ):
        resp = await authed.post(
            url, data={"confirm": "yes", "token": "approve:a-1"}, headers=origin(authed)
        )
        assert resp.status == 401, url
    assert (await authed.get("/runs/a-1/live")).status == 401
    assert (await authed.get("/live/runs")).status == 401
    assert (await authed.get("/runs/a-1/payload/input")).status == 401
    # the bearer token works for scripts
    bearer = await authed.get("/runs/a-1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status == 200
    assert (await engine.world.get_run("a-1")).status is RunStatus.RUNNING


async def test_a_post_needs_the_csrf_token_and_this_origin(engine: Engine, authed: Client) -> None:
    run = await engine.start(flows.order, "c-1", run_id="c-1")
    await wait_until_blocked(run, hook="approve:c-1")
    await login(authed)
    page = await (await authed.get("/runs/c-1")).text()
    token = csrf_of(page)
    no_csrf = await authed.post("/runs/c-1/cancel", data={"confirm": "yes"}, headers=origin(authed))
    assert no_csrf.status == 403
    cross = await authed.post(
        "/runs/c-1/cancel",
        data={"confirm": "yes", "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status == 403
    assert "cross-origin" in await cross.text()
    no_origin = await authed.post("/runs/c-1/cancel", data={"confirm": "yes", "csrf": token})
    assert no_origin.status == 403
    assert (await engine.world.get_run("c-1")).status is RunStatus.RUNNING

    unconfirmed = await authed.post(
        "/runs/c-1/cancel", data={"csrf": token, "reason": "dup"}, headers=origin(authed)
    )
    assert unconfirmed.status == 400
    ok = await authed.post(
        "/runs/c-1/cancel",
        data={"confirm": "yes", "csrf": token, "reason": "dup order"},
        headers=origin(authed),
        allow_redirects=False,
    )
    assert ok.status == 303
    assert ok.headers["Location"] == "/runs/c-1?done=cancelled"
    view = await engine.world.get_run("c-1")
    assert view.status is RunStatus.CANCELLED
    assert view.cancel_reason == "dup order"
    html = await (await authed.get("/runs/c-1?done=cancelled")).text()
    assert "Run cancelled." in html
    assert re.search(r"Cancelled by inspector session [0-9a-f]{10}: “dup order”", html)
    assert "Run already cancelled" in html  # the cancel button is disabled, saying why


async def test_suspend_resume_raise_rerun_resolve(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.waits, "x", run_id="s-1")
    await wait_until_blocked(run, event="go")
    token = csrf_of(await (await client.get("/runs/s-1")).text())
    hdrs = origin(client)

    async def post(url: str, **data: str) -> Any:
        return await client.post(
            url, data={"csrf": token, **data}, headers=hdrs, allow_redirects=False
        )

    assert (await post("/runs/s-1/suspend", reason="maintenance")).status == 303
    assert (await engine.world.get_run("s-1")).status is RunStatus.SUSPENDED
    html = await (await client.get("/runs/s-1")).text()
    assert "Run suspended" in html
    assert (await post("/runs/s-1/resume")).status == 303
    assert (await engine.world.get_run("s-1")).status is not RunStatus.SUSPENDED

    bad = await post("/runs/s-1/raise-event", name="go", payload="{not json")
    assert bad.status == 400
    assert "`payload` is not valid JSON" in await bad.text()
    assert (await post("/runs/s-1/raise-event", name="go", payload='{"n": 1}')).status == 303
    assert await run.result(timeout=10) == {"n": 1}

    again = await post("/runs/s-1/rerun")
    assert again.status == 303
    new_id = again.headers["Location"].split("/runs/")[1].split("?")[0]
    assert new_id != "s-1"
    assert (await engine.world.get_run(new_id)).forked_from == "s-1"

    order = await engine.start(flows.order, "r-1", run_id="r-1")
    await wait_until_blocked(order, hook="approve:r-1")
    resolved = await post("/hooks/resolve", token="approve:r-1", payload='{"ok": true}')
    assert resolved.status == 303
    assert resolved.headers["Location"] == "/runs/r-1?done=resolved"
    assert (await order.result(timeout=10))["approval"] == {"ok": True}
    html = await (await client.get("/runs/r-1")).text()
    assert "Nothing pending" in html
    missing = await post("/hooks/resolve", token="no-such-token", payload="1")
    assert missing.status == 404

    started = await post(
        "/workflows/start",
        workflow="tests.inspector.flows:echo",
        arguments='{"value": 5}',
        run_id="st-1",
    )
    assert started.status == 303
    assert await (await engine.get_run("st-1")).result(timeout=10) == 5
    wrong_args = await post(
        "/workflows/start", workflow="tests.inspector.flows:echo", arguments='{"nope": 5}'
    )
    assert wrong_args.status == 400

    purge_live = await post("/runs/r-1/purge")
    assert purge_live.status == 400  # no confirm
    assert (await post("/runs/r-1/purge", confirm="yes")).status == 303
    assert (await client.get("/runs/r-1")).status == 404


async def test_read_only_mode_shows_everything_and_allows_nothing(engine: Engine) -> None:
    run = await engine.start(flows.order, "ro-1", run_id="ro-1")
    await wait_until_blocked(run, hook="approve:ro-1")
    client = await client_for(ui_app(engine, read_only=True))
    try:
        html = await (await client.get("/runs/ro-1")).text()
        assert "read-only" in html
        assert "disabled" in html
        token = csrf_of(html)
        resp = await client.post(
            "/runs/ro-1/cancel", data={"csrf": token, "confirm": "yes"}, headers=origin(client)
        )
        assert resp.status == 403
        for url in ("/runs/ro-1/wake", "/runs/ro-1/retry-now"):
            refused = await client.post(
                url, data={"csrf": token, "step": "s"}, headers=origin(client)
            )
            assert refused.status == 403, url
        assert (await engine.world.get_run("ro-1")).status is RunStatus.RUNNING
    finally:
        await client.close()


async def test_wake_and_retry_now_record_who_asked(engine: Engine, authed: Client) -> None:
    napping = await engine.start(flows.napper, 3, run_id="nap-1")
    await wait_until_blocked(napping, sleep=True)
    await login(authed)
    html = await (await authed.get("/runs/nap-1")).text()
    assert "Wake now" in html
    assert "No step is backing off" in html  # retry-now does not apply: said why
    token = csrf_of(html)
    no_csrf = await authed.post("/runs/nap-1/wake", data={}, headers=origin(authed))
    assert no_csrf.status == 403
    unknown = await authed.post(
        "/runs/nap-1/wake", data={"csrf": token, "wait": "wait_nope"}, headers=origin(authed)
    )
    assert unknown.status == 404
    not_backing_off = await authed.post(
        "/runs/nap-1/retry-now", data={"csrf": token, "step": "nope"}, headers=origin(authed)
    )
    assert not_backing_off.status == 404
    no_step = await authed.post(
        "/runs/nap-1/retry-now", data={"csrf": token}, headers=origin(authed)
    )
    assert no_step.status == 400
    assert "`step` is required" in await no_step.text()
    ok = await authed.post(
        "/runs/nap-1/wake", data={"csrf": token}, headers=origin(authed), allow_redirects=False
    )
    assert ok.status == 303
    assert await napping.result(timeout=10) == "slept 3d"
    log = (await engine.world.list_events("nap-1")).items
    woken = [e for e in log if e.type == "wait_woken"]
    assert len(woken) == 1
    actor = getattr(woken[0], "actor", None)
    assert isinstance(actor, str)
    assert actor.startswith("inspector session ")
    page = await (await authed.get("/runs/nap-1")).text()
    assert f"woken by {actor}" in page
    # a script with the bearer token is recorded as the token
    retrying = await engine.start(flows.retrier, "k", run_id="retry-1")

    async def backing_off() -> bool:
        steps = (await engine.world.list_steps("retry-1")).items
        return bool(steps) and steps[0].retry_after is not None

    for _ in range(500):
        if await backing_off():
            break
        await asyncio.sleep(0.01)
    (stepped,) = (await engine.world.list_steps("retry-1")).items
    authed.session.cookie_jar.clear()  # no browser session: a script
    bearer = await authed.post(
        "/runs/retry-1/retry-now",
        data={"step": stepped.step_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
        allow_redirects=False,
    )
    assert bearer.status == 303
    assert await retrying.result(timeout=10) == "ok k"
    log = (await engine.world.list_events("retry-1")).items
    assert [getattr(e, "actor", None) for e in log if e.type == "step_woken"] == ["inspector token"]
