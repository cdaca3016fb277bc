"""A World API token holder cannot forge a child's outcome: a ``child_ended`` posted to a
parent over the World API is checked against the child's recorded end, and each refusal is a
4xx with the rule's message, never a 5xx. Over a real socket, on the memory and the file
world (the conformance suite runs the same rules through ``RemoteWorld``)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.worlds.served import served
from worldflow.worlds import RunCompleted, World
from worldflow.worlds.testing._base import new_run, payload
from worldflow.worlds.testing._children import child_hook, ended_child

pytestmark = pytest.mark.anyio


def _body(parent_id: str, child_id: str, outcome: dict[str, Any]) -> str:
    event = {
        "type": "child_ended",
        "run_id": parent_id,
        "correlation_id": "hc",
        "child_run_id": child_id,
        "outcome": outcome,
    }
    return json.dumps({"events": [event]})


COMPLETED_7 = {"status": "completed", "output": 7}

# (case, how the child is, the outcome posted, the status, what the message says)
CASES = [
    ("never-started", None, COMPLETED_7, 400, "no such run"),
    ("another-runs-child", "other", COMPLETED_7, 400, "its parent is"),
    ("still-running", "running", COMPLETED_7, 409, "has not ended"),
    ("other-output", "completed", {"status": "completed", "output": 8}, 400, "did not end with"),
    (
        "failed-instead",
        "completed",
        {"status": "failed", "error": {"name": "E", "message": "m"}},
        400,
        "did not end with",
    ),
]


@pytest.mark.parametrize(
    ("child", "outcome", "status", "says"),
    [pytest.param(*rest, id=case) for case, *rest in CASES],
)
async def test_a_forged_child_outcome_is_a_4xx_and_stores_nothing(
    world: World, child: str | None, outcome: dict[str, Any], status: int, says: str
) -> None:
    parent = await new_run(world, started=True)
    r = parent.run_id
    kid = f"{r}-kid"
    await child_hook(world, r, kid)
    if child is not None:
        parent_of_child = (await new_run(world)).run_id if child == "other" else r
        end = None if child == "running" else RunCompleted(run_id=kid, output=payload(7))
        await ended_child(world, parent_of_child, kid, end)
    last = (await world.get_run(r)).last_seq
    async with (
        served(world) as url,
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/_world/v1/runs/{r}/events",
            data=_body(r, kid, outcome),
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        text = await resp.text()
        assert resp.status == status, text
        assert says in text, text
    assert (await world.get_run(r)).last_seq == last
    assert (await world.get_hook_by_token(f"worldflow:child:{kid}")).received_count == 0


async def test_the_true_outcome_goes_through_once(world: World) -> None:
    parent = await new_run(world, started=True)
    r = parent.run_id
    kid = f"{r}-kid"
    await child_hook(world, r, kid)
    await ended_child(world, r, kid, RunCompleted(run_id=kid, output=payload(7)))
    async with served(world) as url, aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(2):
            async with session.post(
                f"{url}/_world/v1/runs/{r}/events",
                data=_body(r, kid, COMPLETED_7),
                headers={"Content-Type": "application/json"},
            ) as resp:
                statuses.append((resp.status, await resp.text()))
    assert statuses[0][0] == 200, statuses[0][1]
    assert statuses[1][0] == 409, statuses[1][1]  # the first child_ended wins
    assert "first child_ended wins" in statuses[1][1]
    assert (await world.get_hook_by_token(f"worldflow:child:{kid}")).received_count == 1
