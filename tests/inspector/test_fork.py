"""Fork from a step with edited input, from the run page: refused without a session, CSRF,
this origin or in read-only mode; a new run with lineage on both pages, recorded with who
asked; the source's log untouched; bad input a 400 naming the field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.inspector import flows
from tests.inspector.conftest import TOKEN, client_for, ui_app
from tests.inspector.test_actions import csrf_of, login, origin
from worldflow import Engine
from worldflow.testing import wait_until_blocked
from worldflow.worlds import RunStatus, encode_event

pytestmark = pytest.mark.anyio

Client = TestClient[Any, Any]


async def _finished_order(engine: Engine, run_id: str) -> str:
    """A finished ``order`` run; the step id of its ``charge_card`` call."""
    run = await engine.start(flows.order, run_id, run_id=run_id)
    await wait_until_blocked(run, hook=f"approve:{run_id}")
    await engine.resume_hook(f"approve:{run_id}", {"ok": True})
    await run.result(timeout=10)
    steps = (await engine.world.list_steps(run_id)).items
    (charge,) = [s for s in steps if s.step_name.endswith("charge_card")]
    return charge.step_id


async def _log(engine: Engine, run_id: str) -> list[bytes]:
    return [encode_event(e) for e in (await engine.world.list_events(run_id)).items]


async def test_fork_from_a_step_with_edited_input(engine: Engine, authed: Client) -> None:
    charge = await _finished_order(engine, "fk-1")
    before = await _log(engine, "fk-1")
    await login(authed)
    html = await (await authed.get(f"/runs/fk-1?span={charge}")).text()
    # the step panel offers its recorded input for editing, and the bar every step
    assert "Fork from this step" in html
    assert re.search(r'<textarea name="input"[^>]*>\{\s*&#34;amount&#34;: 10\s*\}</textarea>', html)
    assert f'<option value="{charge}" selected>' in html
    token = csrf_of(html)
    form = {"csrf": token, "from_step": charge, "input": '{"amount": 99}', "run_id": "fk-1b"}

    assert (await authed.post("/runs/fk-1/fork", data=form)).status == 403  # no origin
    cross = await authed.post("/runs/fk-1/fork", data=form, headers={"Origin": "https://x.example"})
    assert cross.status == 403
    no_csrf = {k: v for k, v in form.items() if k != "csrf"}
    assert (
        await authed.post("/runs/fk-1/fork", data=no_csrf, headers=origin(authed))
    ).status == 403
    assert (await engine.world.list_runs(forked_from="fk-1")).items == []

    ok = await authed.post(
        "/runs/fk-1/fork", data=form, headers=origin(authed), allow_redirects=False
    )
    assert ok.status == 303
    assert ok.headers["Location"] == "/runs/fk-1b?done=forked"
    forked = await engine.get_run("fk-1b")
    await wait_until_blocked(forked, hook="approve:fk-1")  # what came after is not reused
    await engine.resume_hook("approve:fk-1", {"ok": "again"})
    result = await forked.result(timeout=10)
    assert result["charged"] == "charged 99"  # the step ran again with the edited input
    fork = await engine.world.get_run("fk-1b")
    assert (fork.forked_from, fork.forked_from_step) == ("fk-1", charge)
    first = (await engine.world.list_events("fk-1b")).items[0]
    actor = getattr(first, "actor", None)
    assert isinstance(actor, str)
    assert actor.startswith("inspector session ")
    assert await _log(engine, "fk-1") == before  # the source's log is untouched

    # lineage on both pages
    forked_page = await (await authed.get("/runs/fk-1b?done=forked")).text()
    assert "Started as a fork of the run it came from" in forked_page
    assert re.search(
        rf'Forked from</dt><dd class="mono"><a href="/runs/fk-1">fk-1</a> at step {charge}',
        forked_page,
    )
    assert f"(by {actor})" in forked_page  # the event log says who forked it
    source_page = await (await authed.get("/runs/fk-1")).text()
    assert re.search(r'<dt>Forks</dt><dd class="mono forks"><a href="/runs/fk-1b"', source_page)
    listed = await (await authed.get("/?forked_from=fk-1")).text()
    assert "fk-1b" in listed
    assert ">fk-1<" not in listed.split("<table", 1)[-1]  # only its forks are listed


async def test_an_unedited_input_and_a_fork_from_the_start(engine: Engine, client: Client) -> None:
    charge = await _finished_order(engine, "fk-2")
    token = csrf_of(await (await client.get("/runs/fk-2")).text())

    async def post(**data: str) -> Any:
        return await client.post(
            "/runs/fk-2/fork",
            data={"csrf": token, **data},
            headers=origin(client),
            allow_redirects=False,
        )

    same = await post(from_step=charge, input='{ "amount" : 10 }', run_id="fk-2a")
    assert same.status == 303
    kept = await engine.get_run("fk-2a")
    await wait_until_blocked(kept, hook="approve:fk-2")
    await engine.resume_hook("approve:fk-2", True)
    assert (await kept.result(timeout=10))["charged"] == "charged 10"
    start = await post(input='{"order_id": "fk-2", "amount": 7}', run_id="fk-2b")
    assert start.status == 303
    fork = await engine.world.get_run("fk-2b")
    assert (fork.forked_from, fork.forked_from_step) == ("fk-2", None)
    await wait_until_blocked(await engine.get_run("fk-2b"), hook="approve:fk-2")
    steps = (await engine.world.list_steps("fk-2b")).items
    assert [s.output for s in steps if s.step_name.endswith("charge_card")] != []
    assert fork.status is RunStatus.RUNNING


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        ({"input": "{nope"}, 400, "`input` is not valid JSON"),
        ({"input": "[1, 2]"}, 400, "`input` must be a JSON object"),
        ({"input": '{"nope": 1}'}, 400, "`input` does not fit"),
        ({"from_step": "step_nope"}, 404, "no step"),
        ({"from_step": "fetch"}, 409, "3 calls of step"),
        ({"run_id": "fk-3"}, 409, "already exists"),
    ],
)
async def test_bad_forks_say_why_and_start_nothing(
    engine: Engine, client: Client, data: dict[str, str], status: int, says: str
) -> None:
    charge = await _finished_order(engine, "fk-3")
    token = csrf_of(await (await client.get("/runs/fk-3")).text())
    form = {"csrf": token, "from_step": charge, **data}
    resp = await client.post("/runs/fk-3/fork", data=form, headers=origin(client))
    assert resp.status == status
    assert says in await resp.text()
    assert (await engine.world.list_runs(forked_from="fk-3")).items == []


async def test_fork_refused_without_a_session_and_in_read_only(engine: Engine) -> None:
    charge = await _finished_order(engine, "fk-4")
    authed = await client_for(ui_app(engine, token=TOKEN))
    read_only = await client_for(ui_app(engine, read_only=True))
    try:
        form = {"from_step": charge, "input": '{"amount": 1}'}
        assert (await authed.post("/runs/fk-4/fork", data=form)).status == 401
        html = await (await read_only.get(f"/runs/fk-4?span={charge}")).text()
        assert re.search(r'disabled aria-describedby="why-fork-span"', html)
        resp = await read_only.post(
            "/runs/fk-4/fork", data={**form, "csrf": csrf_of(html)}, headers=origin(read_only)
        )
        assert resp.status == 403
        assert (await engine.world.list_runs(forked_from="fk-4")).items == []
    finally:
        await authed.close()
        await read_only.close()


async def test_a_child_starting_step_cannot_be_forked_from(engine: Engine, client: Client) -> None:
    run = await engine.start(flows.parent, 3, run_id="fk-5")
    assert await run.result(timeout=10) == 3
    (child_step,) = (await engine.world.list_steps("fk-5")).items
    html = await (await client.get(f"/runs/fk-5?span={child_step.step_id}")).text()
    assert "This step starts a child workflow" in html
    token = csrf_of(html)
    resp = await client.post(
        "/runs/fk-5/fork",
        data={"csrf": token, "from_step": child_step.step_id},
        headers=origin(client),
    )
    assert resp.status == 400
    assert "starts a child workflow" in await resp.text()
