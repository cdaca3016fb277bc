"""The UI's pages over real HTTP: runs list, run page, payloads, hooks, workflows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.inspector import flows
from worldflow import Engine
from worldflow.testing import wait_until_blocked

pytestmark = pytest.mark.anyio

Client = TestClient[Any, Any]


def run_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="run-([^"]+)"', html)


async def test_runs_list_filters_by_status_and_pages_stay_stable(
    engine: Engine, client: Client
) -> None:
    for i in range(60):
        await engine.start(flows.echo, i, run_id=f"e-{i:03}")
    for i in range(5):
        run = await engine.start(flows.waits, "w", run_id=f"w-{i}")
        await wait_until_blocked(run, event="go")
    for i in range(60):
        await (await engine.get_run(f"e-{i:03}")).result(timeout=10)

    resp = await client.get("/?status=completed&limit=20")
    assert resp.status == 200
    html = await resp.text()
    first = run_ids(html)
    assert first == [f"e-{i:03}" for i in range(59, 39, -1)]  # newest first
    assert 'data-count="completed">60' in html
    assert 'data-count="running">5' in html
    nxt = re.search(r'rel="next" href="([^"]+)"', html)
    assert nxt is not None
    page2_url = nxt.group(1).replace("&amp;", "&")
    assert "cursor=" in page2_url
    assert "status=completed" in page2_url
    page2 = run_ids(await (await client.get(page2_url)).text())
    assert page2 == [f"e-{i:03}" for i in range(39, 19, -1)]

    # new runs start: page 2 (by its cursor) is the same
    for i in range(5):
        await (await engine.start(flows.echo, i, run_id=f"late-{i}")).result(timeout=10)
    assert run_ids(await (await client.get(page2_url)).text()) == page2

    only_waits = run_ids(await (await client.get("/?workflow=tests.inspector.flows:waits")).text())
    assert sorted(only_waits) == [f"w-{i}" for i in range(5)]


async def test_a_filter_the_list_cannot_apply_is_refused_naming_it(client: Client) -> None:
    resp = await client.get("/?status=bogus")
    assert resp.status == 400
    assert "`status` must be one of" in await resp.text()
    resp = await client.get("/?after=yesterday")
    assert resp.status == 400
    assert "`after`" in await resp.text()
    resp = await client.get("/?cursor=not-a-cursor")
    assert resp.status == 400


async def test_search_jumps_to_a_run_or_lists_a_prefix(engine: Engine, client: Client) -> None:
    for i in range(3):
        await engine.start(flows.echo, i, run_id=f"abc-{i}")
    await engine.start(flows.echo, 9, run_id="xyz-1")
    resp = await client.get("/?q=abc-1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/runs/abc-1"
    html = await (await client.get("/?q=abc")).text()
    assert sorted(run_ids(html)) == ["abc-0", "abc-1", "abc-2"]
    assert "with an id starting with <code>abc</code>" in html


async def test_run_page_shows_waiting_on_timeline_and_events(
    engine: Engine, client: Client
) -> None:
    run = await engine.start(flows.order, "o-1", run_id="o-1")
    await wait_until_blocked(run, hook="approve:o-1")
    resp = await client.get("/runs/o-1")
    assert resp.status == 200
    html = await resp.text()
    assert "Hook approve:o-1" in html  # waiting on
    assert 'name="token" value="approve:o-1"' in html  # its resolve form
    assert re.search(r'aria-label="Step charge_card, completed after 3 attempts, [^"]+"', html)
    assert html.count('class="part p-retry"') == 2
    assert html.count('class="part p-backoff"') == 2
    assert len(re.findall(r'aria-label="Step fetch, completed', html)) == 3
    assert 'id="ev-1"' in html
    assert "run_created" in html
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")

    events = await (await client.get("/runs/o-1?type=step_retrying")).text()
    assert len(re.findall(r'<tr id="ev-\d+"', events)) == 2


async def test_a_patched_run_shows_its_versioning_marks(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.versioned, 4, run_id="ver-1")
    assert await run.result(timeout=10) == 8
    html = await (await client.get("/runs/ver-1")).text()
    assert re.search(r"<dt>Patches</dt><dd[^>]*><a [^>]*>double-it</a>", html)
    assert re.search(r'class="mark m-patch"[^>]*><title>#\d+ patched\(&#39;double-it&#39;\)', html)
    assert "versioning mark" in html  # the legend names it
    assert "patched(&#39;double-it&#39;): the new code" in html  # the event log row
    plain = await (await client.get("/runs/ver-1?type=patch_marked")).text()
    assert plain.count('<tr id="ev-') == 1


async def test_a_delayed_run_shows_when_it_starts(engine: Engine, client: Client) -> None:
    await engine.start(flows.echo, "later", run_id="o-later", delay="1h")
    html = await (await client.get("/runs/o-later")).text()
    assert "Delayed start" in html
    assert re.search(r"starts it in (60 min|1 h)", html)  # less the moments since the start


async def test_unknown_run_is_a_404_page(client: Client) -> None:
    resp = await client.get("/runs/nope")
    assert resp.status == 404
    assert "nope" in await resp.text()


async def test_payloads_download_as_attachments_and_big_ones_are_previewed(
    engine: Engine, client: Client
) -> None:
    big = {"blob": "x" * 200_000}
    await (await engine.start(flows.echo, big, run_id="big")).result(timeout=10)
    html = await (await client.get("/runs/big")).text()
    assert "Too large to show here" in html
    assert "x" * 300_000 not in html
    resp = await client.get("/runs/big/payload/output")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Content-Disposition"].startswith("attachment")
    body = await resp.read()
    assert len(body) > 200_000
    assert (await client.get("/runs/big/payload/nothing")).status == 404
    export = await client.get("/runs/big/events.jsonl")
    assert export.status == 200
    assert len((await export.read()).splitlines()) == (await engine.world.get_run("big")).last_seq


async def test_hostile_payloads_show_as_text(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.hostile, flows.HOSTILE, run_id="evil")
    await wait_until_blocked(run, on="hook")
    for url in ("/", "/runs/evil", "/hooks"):
        html = await (await client.get(url)).text()
        assert "<script>window" not in html
        assert "onerror=window" not in html or "&lt;img src=x onerror=window" in html
    html = await (await client.get("/runs/evil")).text()
    assert "&lt;script&gt;window.__x=1&lt;/script&gt;" in html


async def test_hooks_and_workflows_pages(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.order, "h-1", run_id="h-1")
    await wait_until_blocked(run, hook="approve:h-1")
    html = await (await client.get("/hooks")).text()
    assert "approve:h-1" in html
    assert "worldflow:child:" not in html
    html = await (await client.get("/workflows")).text()
    assert "tests.inspector.flows:order" in html
    assert "Charge (retried), fetch three things in parallel" in html
    assert "charge_card" in html


async def test_static_assets_and_no_path_tricks(client: Client) -> None:
    resp = await client.get("/static/app.css")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/css")
    assert (await client.get("/static/..%2F_state.py")).status == 404
    assert (await client.get("/static/nope.js")).status == 404


async def test_parent_and_child_runs_link_each_other(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.parent, 7, run_id="par-1")
    assert await run.result(timeout=10) == 7
    html = await (await client.get("/runs/par-1")).text()
    child = re.search(r'<a href="/runs/(par-1-[^"]+)" aria-label="Child echo, completed', html)
    assert child is not None, "the timeline links the child run"
    assert "Related runs" in html
    child_html = await (await client.get(f"/runs/{child.group(1)}")).text()
    assert '<a href="/runs/par-1">par-1</a>' in child_html
    listing = await (await client.get("/")).text()
    assert 'href="/runs/par-1" title="child of par-1"' in listing


async def test_counts_never_hold_a_page_up(engine: Engine, client: Client) -> None:
    import asyncio

    from worldflow.inspector.ui._state import LIVE_TASKS

    await (await engine.start(flows.echo, 1, run_id="cnt-1")).result(timeout=10)
    assert 'data-count="completed">1<' in await (await client.get("/")).text()
    await (await engine.start(flows.echo, 2, run_id="cnt-2")).result(timeout=10)
    html = await (await client.get("/")).text()
    # the world changed: the last counts at once, fresh ones computed meanwhile
    assert "being updated" in html
    assert 'data-count="completed">1<' in html
    assert len(re.findall(r'<tr id="run-', html)) == 2  # the rows themselves are current
    await asyncio.gather(*client.app[LIVE_TASKS])
    html = await (await client.get("/")).text()
    assert 'data-count="completed">2<' in html
    assert "being updated" not in html
