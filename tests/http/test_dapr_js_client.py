"""The real ``@dapr/dapr`` npm client, in HTTP mode, against a live worldflow server."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest

from tests.engine.runtime import running
from tests.http.dapr_workflows import DAPR_WORKFLOWS
from tests.http.npm import HERE, ensure_node_modules, node
from tests.http.served import serving
from worldflow import Engine
from worldflow.worlds import MemoryWorld

pytestmark = pytest.mark.anyio

TOKEN = "js-client-token"


@pytest.fixture(scope="module")
def node_modules() -> None:
    ensure_node_modules()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(MemoryWorld(), DAPR_WORKFLOWS) as engine:
        yield engine


async def test_the_dapr_js_client_drives_the_api(node_modules: None, engine: Engine) -> None:
    async with serving(engine, token=TOKEN) as srv:
        port = srv.url.rsplit(":", 1)[1]
        env = {**os.environ, "DAPR_HTTP_PORT": port, "DAPR_API_TOKEN": TOKEN}
        proc = await asyncio.create_subprocess_exec(
            node(),
            str(HERE / "drive_dapr.mjs"),
            cwd=HERE,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, stderr.decode()
    checks = {}
    for line in stdout.decode().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            checks[entry["check"]] = entry["value"]
    assert checks == {
        "scheduled": "js-order-1",
        "running": {"name": "order_wf", "input": '{"item":"pen","qty":2}', "createdIsDate": True},
        "duplicate": 409,
        "paused": "SUSPENDED",
        "completed": {"order": {"item": "pen", "qty": 2}, "decision": {"approved": True}},
        "purged": 404,
        "generated": 36,
        "text input": '"text input"',
        "terminated": "TERMINATED",
        "unknown pause": 404,
    }
