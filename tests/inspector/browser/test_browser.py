"""The inspector in a real browser: what a person sees and does."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.inspector import flows
from tests.inspector.browser.conftest import Served, serve
from tests.inspector.conftest import TOKEN, ui_app
from worldflow import Engine
from worldflow.inspector.ui._state import LIVE_TASKS
from worldflow.testing import wait_until_blocked
from worldflow.worlds import RunStatus

pytestmark = pytest.mark.anyio


async def test_list_filters_paging_and_search(page: Page, served: Served) -> None:
    engine = served.engine
    for i in range(30):
        await (await engine.start(flows.echo, i, run_id=f"done-{i:02}")).result(timeout=10)
    for i in range(3):
        run = await engine.start(flows.waits, "x", run_id=f"wait-{i}")
        await wait_until_blocked(run, event="go")

    await page.goto(served.base + "/")
    await expect(page.locator("[data-count=all]")).to_have_text("33")
    await page.get_by_label("completed", exact=True).check()
    await page.get_by_label("Per page").select_option("20")
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(re.compile(r"status=completed"))
    rows = page.locator("table.runs tbody tr")
    await expect(rows).to_have_count(20)
    await expect(page.locator("table.runs .badge")).to_have_text(["completed"] * 20)
    first_page = await rows.locator("td.mono a").all_inner_texts()

    await page.get_by_role("link", name="Older →").click()
    await expect(page).to_have_url(re.compile(r"cursor="))
    await expect(rows).to_have_count(10)
    older = await rows.locator("td.mono a").all_inner_texts()
    assert not set(older) & set(first_page)

    # runs starting meanwhile do not move a page: a bar offers them instead
    for i in range(2):
        await (await engine.start(flows.echo, i, run_id=f"late-{i}")).result(timeout=10)
    await page.reload()
    assert await rows.locator("td.mono a").all_inner_texts() == older
    await page.go_back()  # the newest page again, with late-0 and late-1 on top
    await expect(rows.first).to_contain_text("late-1")
    first_page = await rows.locator("td.mono a").all_inner_texts()
    for i in range(2, 7):
        await (await engine.start(flows.echo, i, run_id=f"late-{i}")).result(timeout=10)
    await expect(page.get_by_role("link", name="5 new runs: show")).to_be_visible()
    assert await rows.locator("td.mono a").all_inner_texts() == first_page

    # search: a full id jumps to the run, a prefix lists the matches
    await page.keyboard.press("/")
    await page.keyboard.type("wait-1")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(served.base + "/runs/wait-1")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("waits")
    await page.locator("#search").fill("wait-")
    await page.locator("#search").press("Enter")
    await expect(rows).to_have_count(3)
    assert served.errors == []


async def test_a_run_updates_live_to_completion(page: Page, served: Served) -> None:
    engine = served.engine
    run = await engine.start(flows.order, "live-1", run_id="live-1")
    await wait_until_blocked(run, hook="approve:live-1")
    await page.goto(served.base + "/runs/live-1")
    await expect(page.locator("[data-region=header] .badge")).to_have_text("running")
    await expect(page.locator("#live-label")).to_have_text("Live")
    url = page.url

    await engine.resume_hook("approve:live-1", {"ok": True})
    await expect(page.locator("[data-region=header] .badge")).to_have_text("completed")
    await expect(page.locator("[data-region=waiting]")).to_contain_text("Nothing pending")
    await expect(page.locator("#live-label")).to_have_text("Finished")
    await expect(page.locator("#live-status")).to_contain_text("new event")
    last = (await engine.world.get_run("live-1")).last_seq
    await expect(page.locator(f"#ev-{last}")).to_be_visible()
    assert page.url == url  # no navigation
    assert served.errors == []


async def test_reconnect_loses_and_doubles_nothing(page: Page, served: Served) -> None:
    engine = served.engine
    run = await engine.start(flows.waits, "x", run_id="rc-1")
    await wait_until_blocked(run, event="go")
    await page.goto(served.base + "/runs/rc-1")
    await expect(page.locator("#live-label")).to_have_text("Live")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/live" in r.url else None)
    # drop every live stream the server holds, then append while the page is cut off
    live = served.app[LIVE_TASKS]
    for task in [*live]:
        task.cancel()
    await engine.raise_event("rc-1", "go", {"n": 1})
    await run.result(timeout=10)
    last = (await engine.world.get_run("rc-1")).last_seq
    await expect(page.locator(f"#ev-{last}")).to_be_attached()
    seqs = [
        int(s)
        for s in await page.locator("#event-rows tr").evaluate_all(
            "rows => rows.map(r => r.dataset.seq)"
        )
    ]
    assert seqs == list(range(1, last + 1))  # each exactly once, contiguous
    assert streams  # the page did reconnect


async def test_timeline_of_a_retried_and_a_parallel_step(page: Page, served: Served) -> None:
    engine = served.engine
    run = await engine.start(flows.order, "tl-1", run_id="tl-1")
    await wait_until_blocked(run, hook="approve:tl-1")
    await page.goto(served.base + "/runs/tl-1")
    charge = page.get_by_role("link", name=re.compile(r"charge_card.*completed after 3 attempts"))
    await expect(charge).to_be_visible()
    row = page.locator(".tl-row.k-step").filter(has_text="charge_card")
    await expect(row.locator("rect.p-retry")).to_have_count(2)
    await expect(row.locator("rect.p-ok")).to_have_count(1)
    await expect(row.locator("rect.p-backoff")).to_have_count(2)

    boxes = []
    for bar in await page.locator(".tl-row.k-step").filter(has_text="fetch").all():
        rects = bar.locator("rect.part")
        first = await rects.first.bounding_box()
        last = await rects.last.bounding_box()
        assert first is not None
        assert last is not None
        boxes.append((first["x"], last["x"] + last["width"]))
    assert len(boxes) == 3
    for lo, hi in boxes:
        for lo2, hi2 in boxes:
            assert lo < hi2, boxes  # the three bars overlap: they ran together
            assert lo2 < hi, boxes

    await charge.click()
    await expect(page.locator("#span-h")).to_contain_text("charge_card")
    await expect(page.locator(".error-box").first).to_contain_text("ValueError")


async def test_each_action(page: Page, served: Served) -> None:
    engine = served.engine
    run = await engine.start(flows.waits, "x", run_id="act-1")
    await wait_until_blocked(run, event="go")
    await page.goto(served.base + "/runs/act-1")

    await page.get_by_text("Suspend…").click()
    await page.get_by_role("button", name="Suspend run").click()
    await expect(page.locator(".flash")).to_have_text("Run suspended.")
    assert (await engine.world.get_run("act-1")).status is RunStatus.SUSPENDED
    await page.locator("[data-region=actions]").get_by_role("button", name="Resume").click()
    await expect(page.locator(".flash")).to_have_text("Run resumed.")

    # invalid JSON is caught in the page: nothing is sent
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    form = page.locator("[data-region=waiting] form")
    await form.locator("textarea").fill("{nope")
    await form.get_by_role("button", name="Raise go").click()
    await expect(form.locator(".json-error")).to_contain_text("Not valid JSON")
    assert posts == []
    await form.locator("textarea").fill('{"n": 2}')
    await form.get_by_role("button", name="Raise go").click()
    await expect(page.locator(".flash")).to_have_text("Event raised.")
    assert await run.result(timeout=10) == {"n": 2}

    await page.locator("[data-region=actions]").get_by_role("button", name="Rerun").click()
    await expect(page.locator(".flash")).to_contain_text("rerun")
    await expect(page.locator("[data-region=header]")).to_contain_text("act-1")  # rerun of

    order = await engine.start(flows.order, "act-2", run_id="act-2")
    await wait_until_blocked(order, hook="approve:act-2")
    await page.goto(served.base + "/runs/act-2")
    hook = page.locator("[data-region=waiting] form.resolve")
    await hook.locator("textarea").fill('{"approved": true}')
    await hook.get_by_role("button", name="Resolve hook").click()
    await expect(page.locator(".flash")).to_have_text("Hook resolved.")
    assert (await order.result(timeout=10))["approval"] == {"approved": True}

    other = await engine.start(flows.waits, "x", run_id="act-3")
    await wait_until_blocked(other, event="go")
    await page.goto(served.base + "/runs/act-3")
    await page.get_by_text("Cancel…").click()
    cancel = page.get_by_role("button", name="Cancel run")
    await page.get_by_label("Reason").first.fill("duplicate order")
    await cancel.click()  # not confirmed: the browser refuses to send the form
    assert (await engine.world.get_run("act-3")).status is RunStatus.RUNNING
    await page.get_by_label("Yes, cancel this run").check()
    await cancel.click()
    await expect(page.locator(".flash")).to_have_text("Run cancelled.")
    await expect(page.locator(".reason")).to_have_text(
        re.compile(r"^Cancelled by inspector session [0-9a-f]{10}: “duplicate order”$")
    )
    # every action is in its run's log with who did it: this browser's session
    acted = [
        *(await engine.world.list_events("act-1")).items,
        *(await engine.world.list_events("act-2")).items,
        *(await engine.world.list_events("act-3")).items,
    ]
    actors = {e.type: getattr(e, "actor", None) for e in acted}
    kinds = ("run_suspended", "run_resumed", "event_raised", "hook_received", "run_cancelled")
    assert len({actors[k] for k in kinds}) == 1
    assert str(actors["run_cancelled"]).startswith("inspector session ")
    (rerun,) = (await engine.list_runs(forked_from="act-1")).items
    first = (await engine.world.list_events(rerun.run_id)).items[0]
    assert getattr(first, "actor", None) == actors["run_cancelled"]
    await expect(page.locator(".why").first).to_contain_text("Run already cancelled")
    assert served.errors == []


async def test_hostile_payloads_are_shown_as_text(page: Page, served: Served) -> None:
    engine = served.engine
    run = await engine.start(flows.hostile, flows.HOSTILE, run_id="evil-1")
    await wait_until_blocked(run, on="hook")
    for path in ("/", "/runs/evil-1", "/hooks", "/runs/evil-1?type=hook_created"):
        await page.goto(served.base + path)
        assert await page.evaluate("window.__x") is None
    await page.goto(served.base + "/runs/evil-1")
    await expect(page.locator("[data-region=waiting]")).to_contain_text("<script>window.__x=1")
    # a live update carries the same markup: still text
    token = f"tok-{flows.HOSTILE}"
    await engine.resume_hook(token, flows.HOSTILE)
    await expect(page.locator("[data-region=header] .badge")).to_have_text("failed")
    await expect(page.locator("[data-region=header]")).to_contain_text("<img src=x onerror")
    assert await page.evaluate("window.__x") is None
    assert not [e for e in served.errors if e.startswith("dialog")]


async def test_without_the_token_nothing_is_shown_or_done(browser: Browser, engine: Engine) -> None:
    run = await engine.start(flows.order, "auth-1", run_id="auth-1")
    await wait_until_blocked(run, hook="approve:auth-1")
    app = ui_app(engine, token=TOKEN)
    runner, base = await serve(app)
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(base + "/runs/auth-1")
        await expect(page).to_have_url(re.compile(r"/login\?next="))
        resp = await page.request.post(base + "/runs/auth-1/cancel", form={"confirm": "yes"})
        assert resp.status == 401
        assert (await page.request.get(base + "/runs/auth-1/live")).status == 401
        await page.get_by_label("Token").fill("wrong")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator(".flash.bad")).to_be_visible()
        await page.get_by_label("Token").fill(TOKEN)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(base + "/runs/auth-1")
        await expect(page.locator("[data-region=waiting]")).to_contain_text("approve:auth-1")
        assert (await engine.world.get_run("auth-1")).status is RunStatus.RUNNING
    finally:
        await context.close()
        await runner.cleanup()


async def test_mounted_under_a_prefix(browser: Browser, engine: Engine) -> None:
    from aiohttp import web

    run = await engine.start(flows.order, "pre-1", run_id="pre-1")
    await wait_until_blocked(run, hook="approve:pre-1")

    async def host_home(request: web.Request) -> web.Response:
        return web.Response(text="the host's own page")

    host = web.Application()
    host.router.add_get("/", host_home)
    host.add_subapp("/ops/wf/", ui_app(engine))
    runner, base = await serve(host)
    context = await browser.new_context()
    seen: list[str] = []
    bad: list[str] = []
    try:
        page = await context.new_page()
        page.on("request", lambda r: seen.append(r.url))
        page.on("response", lambda r: bad.append(r.url) if r.status >= 400 else None)
        await page.goto(base + "/ops/wf/")
        await page.get_by_role("link", name="pre-1").click()
        await expect(page).to_have_url(base + "/ops/wf/runs/pre-1")
        await expect(page.locator("#live-label")).to_have_text("Live")
        hook = page.locator("[data-region=waiting] form.resolve")
        await hook.locator("textarea").fill("true")
        await hook.get_by_role("button", name="Resolve hook").click()
        await expect(page.locator(".flash")).to_have_text("Hook resolved.")
        await page.get_by_role("link", name="Hooks").click()
        await page.get_by_role("link", name="Workflows").click()
        assert bad == []
        assert seen
        assert all(u.startswith(base + "/ops/wf/") for u in seen), seen
        home: Any = await page.request.get(base + "/")
        assert await home.text() == "the host's own page"
    finally:
        await context.close()
        await runner.cleanup()


async def test_wake_a_sleep_and_retry_a_step_now(page: Page, served: Served) -> None:
    engine = served.engine
    waiting = await engine.start(flows.waits, "x", run_id="wk-0")
    await wait_until_blocked(waiting, event="go")
    await page.goto(served.base + "/runs/wk-0")
    actions = page.locator("[data-region=actions]")
    await expect(actions.get_by_role("button", name="Wake sleeps")).to_be_disabled()
    await expect(actions).to_contain_text("Nothing is sleeping")
    await expect(actions.get_by_role("button", name="Retry now")).to_be_disabled()
    await expect(actions).to_contain_text("No step is backing off")

    napping = await engine.start(flows.napper, 3, run_id="wk-1")
    await wait_until_blocked(napping, sleep=True)
    await page.goto(served.base + "/runs/wk-1")
    panel = page.locator("[data-region=waiting]")
    await expect(panel).to_contain_text("sleep")
    await panel.get_by_role("button", name="Wake now").click()
    await expect(page.locator(".flash")).to_have_text("Sleep woken: the run goes on now.")
    assert await napping.result(timeout=10) == "slept 3d"
    await expect(page.locator("[data-region=header] .badge")).to_have_text("completed")
    await expect(page.locator("section[aria-labelledby=events-h]")).to_contain_text(
        "woken by inspector session"
    )

    retrying = await engine.start(flows.retrier, "b", run_id="wk-2")
    for _ in range(500):
        steps = (await engine.world.list_steps("wk-2")).items
        if steps and steps[0].retry_after is not None:
            break
        await asyncio.sleep(0.01)
    await page.goto(served.base + "/runs/wk-2")
    await expect(panel).to_contain_text("first attempt of b fails")
    await panel.get_by_role("button", name="Retry now").click()
    await expect(page.locator(".flash")).to_have_text("Step retried now.")
    assert await retrying.result(timeout=10) == "ok b"
    await expect(page.locator("section[aria-labelledby=events-h]")).to_contain_text(
        "retry now, asked by"
    )
    assert served.errors == []
