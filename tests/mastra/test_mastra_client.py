"""The Mastra API driven by the real ``@mastra/client-js`` (pinned in ``package.json``), on a
live server over a real socket, on the memory and the file worlds."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.served import Served, serving
from tests.mastra.workflows import WORKFLOWS
from worldflow import Engine
from worldflow.worlds import World

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
TOKEN = "mastra-test-token"


def _npm_ci() -> None:
    """Install the pinned client from the committed lockfile (once per checkout)."""
    if (HERE / "node_modules" / "@mastra" / "client-js").is_dir():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed for the Mastra client tests (Node 20 + npm)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)


@pytest.fixture(scope="module")
def client_installed() -> None:
    _npm_ci()


@pytest.fixture
async def served(world: World) -> AsyncIterator[Served]:
    async with Engine(world, workflows=WORKFLOWS) as engine, serving(engine, token=TOKEN) as s:
        yield s


async def _drive(served: Served, tag: str) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is needed for the Mastra client tests"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "drive.mjs"),
        cwd=HERE,
        env={**os.environ, "BASE": served.url, "TOKEN": TOKEN, "TAG": tag},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    checks: dict[str, dict[str, Any]] = {}
    for line in out.decode().splitlines():
        record = json.loads(line)
        checks[record.pop("check")] = record
    return checks


async def test_the_real_client_runs_worldflow_workflows(
    client_installed: None, served: Served
) -> None:
    got = await _drive(served, "t")

    assert got["list"]["keys"] == ["approval-wf", "failing-wf", "state-wf"]
    details = got["details"]
    assert details["name"] == "approval-wf"
    assert sorted(details["steps"]) == ["add", "approve"]
    schema = details["input"]["json"]
    assert schema["required"] == ["a", "b"]
    assert schema["properties"] == {"a": {"type": "number"}, "b": {"type": "number"}}

    assert got["createRun"] == {"runId": "t-a"}
    assert got["startAsync"]["status"] == "suspended"
    assert got["startAsync"]["suspended"] == [["approve"]]
    assert got["startAsync"]["suspendPayload"] == {"approve": {"reason": "need approval"}}
    assert got["startAsync"]["steps"] == ["input", "add", "approve"]
    assert got["resumeAsync"] == {
        "status": "success",
        "result": {"sum": 5, "approved": True},
        "approve": "success",
        "resumePayload": {"approved": True},
    }
    assert got["runById"]["status"] == "success"
    assert got["runById"]["result"] == {"sum": 5, "approved": True}
    assert "steps" not in got["runById"]["keys"]
    assert got["runByIdFull"]["payload"] == {"a": 2, "b": 3}
    assert got["runByIdFull"]["resourceId"] == "user-1"

    step = ["workflow-step-start", "workflow-step-result"]
    first = ["workflow-start", *step, "workflow-step-start", "workflow-step-suspended"]
    first.append("workflow-finish")
    assert got["stream"]["types"] == first
    second = ["workflow-start", *step, "workflow-finish"]
    assert got["resumeStream"]["types"] == second
    assert got["observe"]["types"] == first + second
    assert got["observeOffset"]["types"] == ["workflow-finish"]

    assert got["cancel"] == {"message": "Workflow run cancelled"}
    assert got["cancelled"]["status"] == "canceled"

    assert got["runs"] == {"total": 1, "ids": ["t-a"]}
    assert got["runsPaged"] == {"total": 3, "count": 1}

    assert got["failed"]["status"] == "failed"
    assert got["failed"]["error"]["message"].endswith("kaboom")
    assert got["state"]["status"] == "success"
    assert got["state"]["result"] == {
        "order": {"id": "o-1"},
        "state": {"from": "client", "seen": "o-1"},
    }

    assert got["unknownWorkflow"]["status"] == 404
    assert got["unknownRun"]["status"] == 404
    bad = got["badInput"]
    assert bad["status"] == 400
    assert bad["body"]["error"].startswith("Invalid input data")
    assert "- a: Invalid input: expected number, received string" in bad["body"]["error"]
    assert "- b:" in bad["body"]["error"]
    assert got["notSuspended"]["status"] == 409
    assert got["delete"] == {"ok": True}
    assert got["deletedRun"]["status"] == 404
