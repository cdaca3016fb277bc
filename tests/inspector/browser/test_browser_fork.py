"""The inspector in a real browser: fork from a step with edited input, and fail a stalled run."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.inspector import flows
from tests.inspector import test_stalled as stalled
from tests.inspector.browser.conftest import Served, serve
from tests.inspector.conftest import ui_app
from worldflow import Engine
from worldflow.testing import wait_until_blocked
from worldflow.worlds import MemoryWorld, RunStatus, encode_event

pytestmark = pytest.mark.anyio


async def _log(engine: Engine, run_id: str) -> list[bytes]:
    return [encode_event(e) for e in (await engine.world.list_events(run_id)).items]


async def test_fork_from_a_step_with_edited_input(page: Page, served: Served) -> None:
    engine = served.engine
    run = await engine.start(flows.order, "bf-1", run_id="bf-1")
    await wait_until_blocked(run, hook="approve:bf-1")
    await engine.resume_hook("approve:bf-1", {"ok": True})
    await run.result(timeout=10)
    source_log = await _log(engine, "bf-1")

    # pick the step on the timeline: its panel offers the recorded input to edit
    await page.goto(served.base + "/runs/bf-1")
    await page.get_by_role("link", name=re.compile(r"charge_card.*completed")).click()
    await expect(page.locator("#span-h")).to_contain_text("charge_card")
    await page.get_by_text("Fork from this step…").click()
    form = page.locator("#fork-step form")
    box = form.get_by_label("Input (a JSON object of the step's parameters)")
    assert re.fullmatch(r'\{\s*"amount": 10\s*\}', await box.input_value())

    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await box.fill('{"amount": ')
    await form.get_by_role("button", name="Fork run").click()
    await expect(form.locator(".json-error")).to_contain_text("Not valid JSON")
    assert posts == []  # nothing is sent while the JSON does not parse

    hostile = flows.HOSTILE.replace('"', '\\"')
    await box.fill(f'{{"amount": "{hostile}"}}')
    await form.get_by_role("button", name="Fork run").click()
    await expect(page.locator(".flash")).to_contain_text("Started as a fork")
    fork_id = page.url.split("/runs/")[1].split("?")[0]
    assert fork_id != "bf-1"
    header = page.locator("[data-region=header]")
    await expect(header).to_contain_text("Forked from")
    await expect(header.get_by_role("link", name="bf-1")).to_be_visible()
    steps = (await engine.world.list_steps("bf-1")).items
    (charge,) = [s.step_id for s in steps if s.step_name.endswith("charge_card")]
    await expect(header).to_contain_text(f"at step {charge}")

    # the fork runs the step again with the edited input, live on its page
    forked = await engine.get_run(fork_id)
    await wait_until_blocked(forked, hook="approve:bf-1")
    await engine.resume_hook("approve:bf-1", {"ok": "fork"})
    result = await forked.result(timeout=10)
    assert result["charged"] == f"charged {flows.HOSTILE}"
    await expect(header.locator(".badge").first).to_have_text("completed")
    await expect(page.locator("section[aria-labelledby=data-h]")).to_contain_text(
        "<script>window.__x=1</script>"
    )
    assert await page.evaluate("window.__x") is None  # the edited input stayed text
    first = (await engine.world.list_events(fork_id)).items[0]
    actor = getattr(first, "actor", None)
    assert isinstance(actor, str)
    assert actor.startswith("inspector session ")
    await expect(page.locator("section[aria-labelledby=events-h]")).to_contain_text(f"by {actor}")

    # the source names its fork; its log is untouched
    await header.get_by_role("link", name="bf-1").click()
    await expect(page).to_have_url(served.base + "/runs/bf-1")
    await expect(header.get_by_role("link", name=fork_id)).to_be_visible()
    assert await _log(engine, "bf-1") == source_log

    # the actions bar: pick a step from the list, keep its recorded input
    await page.get_by_text("Fork…", exact=True).click()
    bar = page.locator("[data-region=actions] form.fork-form")
    await bar.get_by_label("From step").select_option(charge)
    await bar.get_by_label("New run id").fill("bf-1-again")
    await bar.get_by_role("button", name="Fork run").click()
    await expect(page).to_have_url(served.base + "/runs/bf-1-again?done=forked")
    again = await engine.get_run("bf-1-again")
    await wait_until_blocked(again, hook="approve:bf-1")
    await engine.resume_hook("approve:bf-1", True)
    assert (await again.result(timeout=10))["charged"] == "charged 10"
    assert await _log(engine, "bf-1") == source_log
    assert served.errors == []


async def test_fail_a_stalled_run(browser: Browser) -> None:
    stalled.VERSION["v"] = 1
    world = MemoryWorld()
    try:
        async with Engine(world, [stalled.changing]) as engine:
            run = await engine.start(stalled.changing, "x", run_id="bst-1")
            await wait_until_blocked(run, hook="go:x")
            stalled.VERSION["v"] = 2  # a deploy that changed the code under the run
            engine.evict()
            await engine.raise_event("bst-1", "poke")
            async with asyncio.timeout(10):
                while (await world.get_run("bst-1")).status is not RunStatus.STALLED:
                    seq = (await world.get_run("bst-1")).last_seq
                    await world.wait_for_run("bst-1", after_seq=seq)
            runner, base = await serve(ui_app(engine))
            context = await browser.new_context()
            try:
                page = await context.new_page()
                await page.goto(base + "/runs/bst-1")
                panel = page.locator("[data-region=waiting]")
                await expect(panel).to_contain_text("Recorded in the log")
                await panel.get_by_role("button", name="Retry replay").click()
                await expect(page.locator(".flash")).to_contain_text("stays stalled")
                await panel.get_by_text("Fail run…").click()
                await panel.get_by_label("Reason").fill("rolled forward")
                await panel.get_by_label("Fail this run for good").check()
                await panel.get_by_role("button", name="Fail run").click()
                await expect(page.locator(".flash")).to_have_text("Run failed for good.")
                await expect(page.locator("[data-region=header] .badge")).to_have_text("failed")
                view = await world.get_run("bst-1")
                assert view.status is RunStatus.FAILED
                assert view.error is not None
                assert "rolled forward" in view.error.message
                failed = [
                    e for e in (await world.list_events("bst-1")).items if e.type == "run_failed"
                ]
                assert str(getattr(failed[0], "actor", "")).startswith("inspector session ")
                actions = page.locator("[data-region=actions]")
                await expect(actions).to_contain_text("Run already failed")
            finally:
                await context.close()
                await runner.cleanup()
    finally:
        stalled.VERSION["v"] = 1
        await world.aclose()
