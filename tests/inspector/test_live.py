"""Live updates: server-sent events carry new event rows and fresh regions, resume after a
reconnect from ``Last-Event-ID`` with nothing lost or doubled, and end with the run."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.inspector import flows
from worldflow import Engine
from worldflow.testing import wait_until_blocked

pytestmark = pytest.mark.anyio

Client = TestClient[Any, Any]


async def next_message(resp: ClientResponse) -> tuple[str | None, str, Any]:
    """The next SSE message (id, event, decoded data), skipping comments and retry lines."""
    msg_id: str | None = None
    event = "message"
    data = ""
    async with asyncio.timeout(10):
        while True:
            line = (await resp.content.readline()).decode()
            if line == "":
                raise EOFError("stream ended")
            line = line.rstrip("\n")
            if not line:
                if data:
                    return msg_id, event, json.loads(data)
                continue
            field, _, value = line.partition(": ")
            if field == "id":
                msg_id = value
            elif field == "event":
                event = value
            elif field == "data":
                data += value


def seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="ev-(\d+)"', html)]


async def test_run_page_stream_sends_new_rows_once_and_resumes(
    engine: Engine, client: Client
) -> None:
    run = await engine.start(flows.order, "l-1", run_id="l-1")
    await wait_until_blocked(run, hook="approve:l-1")
    last = (await engine.world.get_run("l-1")).last_seq

    resp = await client.get(f"/runs/l-1/live?last={last - 3}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    msg_id, event, data = await next_message(resp)
    assert event == "update"
    assert msg_id == str(last)
    assert seqs(data["rows"]) == [last - 2, last - 1, last]  # only what the page lacks
    assert set(data["regions"]) == {"header", "actions", "waiting", "timeline", "data"}
    assert "Hook approve:l-1" in data["regions"]["waiting"]
    resp.close()

    # events appended while disconnected arrive after a reconnect, each once
    await engine.resume_hook("approve:l-1", {"ok": True})
    await run.result(timeout=10)
    final = (await engine.world.get_run("l-1")).last_seq
    resp = await client.get("/runs/l-1/live", headers={"Last-Event-ID": str(last)})
    got: list[int] = []
    while True:
        msg_id, event, data = await next_message(resp)
        if event == "end":
            assert data == {"status": "completed"}
            break
        got.extend(seqs(data["rows"]))
        assert "completed" in data["regions"]["header"]
        assert "Nothing pending" in data["regions"]["waiting"]
    assert got == list(range(last + 1, final + 1))
    resp.close()


async def test_run_stream_follows_a_run_as_it_moves(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.waits, "x", run_id="l-2")
    await wait_until_blocked(run, event="go")
    last = (await engine.world.get_run("l-2")).last_seq
    resp = await client.get(f"/runs/l-2/live?last={last}")
    task = asyncio.create_task(next_message(resp))
    await asyncio.sleep(0)  # the stream is waiting on the world's notification
    await engine.raise_event("l-2", "go", {"hi": "<b>there</b>"})
    _, event, data = await task
    assert event == "update"
    assert seqs(data["rows"])[0] == last + 1
    assert "<b>there</b>" not in data["rows"]  # escaped like the page
    resp.close()


async def test_runs_list_stream_updates_rows_and_counts_new_runs(
    engine: Engine, client: Client
) -> None:
    run = await engine.start(flows.waits, "x", run_id="rl-1")
    await wait_until_blocked(run, event="go")
    resp = await client.get("/live/runs?ids=rl-1&newest=rl-1")
    assert resp.status == 200
    await asyncio.sleep(0.05)
    await engine.raise_event("rl-1", "go", 1)
    await run.result(timeout=10)
    await engine.start(flows.echo, 1, run_id="rl-2")
    for _ in range(5):
        _, event, data = await next_message(resp)
        assert event == "runs"
        if data["new"] == 1 and "s-completed" in data["rows"]["rl-1"]:
            break
    else:
        raise AssertionError(f"the list stream never showed the change: {data}")
    resp.close()


async def test_stream_of_an_unknown_run_is_404(client: Client) -> None:
    assert (await client.get("/runs/nope/live")).status == 404
    assert (await client.get("/runs/nope/live?last=x")).status == 400


async def test_a_stream_page_and_its_live_tail(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.chatty, ["<b>hello</b>", "world"], run_id="talk-1")
    await wait_until_blocked(run, hook="chatty:done")
    html = await (await client.get("/runs/talk-1")).text()
    found = re.search(r'href="(/runs/talk-1/streams/[^"]+)"', html)
    assert found is not None
    page = await (await client.get(found.group(1))).text()
    assert "&lt;b&gt;hello&lt;/b&gt;" in page
    assert 'id="chunk-1"' in page
    live = await client.get(found.group(1) + "/live", headers={"Last-Event-ID": "0"})
    msg_id, event, data = await next_message(live)
    assert (msg_id, event) == ("1", "chunk")
    assert 'id="chunk-1"' in data["html"]
    await engine.resume_hook("chatty:done", None)
    assert await run.result(timeout=10) == 2
    _, event, _ = await next_message(live)
    assert event == "end"  # the engine closes a run's streams when it ends
    live.close()
    assert (await client.get("/runs/talk-1/streams/nope")).status == 404
