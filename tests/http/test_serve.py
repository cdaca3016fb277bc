"""``worldflow serve`` as a subprocess, and the CLI's action commands through it and directly
on a file world."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.engine.runtime import WAIT
from worldflow._cli import main
from worldflow.worlds import FileWorld, RunStatus

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "serve-token"
WORKFLOWS = "tests.http.dapr_workflows:DAPR_WORKFLOWS"
START_WAIT = 60.0


class Server:
    """A running ``worldflow serve``: its URL and process."""

    def __init__(self, url: str, proc: asyncio.subprocess.Process) -> None:
        self.url = url
        self.proc = proc


@asynccontextmanager
async def served(world: str, *serve_args: str, token: str | None = TOKEN) -> AsyncIterator[Server]:
    """``worldflow --world WORLD serve --port 0 SERVE_ARGS``; stopped with SIGTERM at the end
    (it must then exit 0, saying it stopped)."""
    args = [sys.executable, "-m", "worldflow", "--world", world, "serve", "--port", "0"]
    args += [*(["--token", token] if token else []), *serve_args]
    env = {k: v for k, v in os.environ.items() if k != "WORLDFLOW_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), START_WAIT)
        if not line.startswith(b"worldflow serving on "):
            raise AssertionError(line + await proc.stderr.read())
        yield Server(line.split()[3].decode(), proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(proc.communicate(), START_WAIT)
    assert proc.returncode == 0, err.decode()
    assert b"worldflow: stopped" in rest


async def cli(*argv: str) -> int:
    """The CLI in a thread (it runs its own event loop, as from a shell)."""
    return await asyncio.to_thread(main, list(argv))


async def get_json(url: str, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as s, s.get(url + path, headers=headers) as r:
        return r.status, await r.json()


async def until(url: str, instance: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            code, body = await get_json(url, f"/v1.0/workflows/dapr/{instance}")
            if code == 200 and body["runtimeStatus"] == status:
                return dict(body)
            await asyncio.sleep(0.02)


async def test_serve_act_through_it_stop_and_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = f"file://{tmp_path / 'wf'}"
    async with served(world, "--workflows", WORKFLOWS) as srv:
        async with aiohttp.ClientSession() as s, s.get(srv.url + "/healthz") as r:
            assert r.status == 200
        remote = ("--server", srv.url, "--token", TOKEN)
        assert await cli("start", "order_wf", '{"item": "pen"}', "--run-id", "c1", *remote) == 0
        assert "started run c1" in capsys.readouterr().out
        await until(srv.url, "c1", "RUNNING")
        assert await cli("suspend", "c1", *remote) == 0
        await until(srv.url, "c1", "SUSPENDED")
        assert await cli("resume", "c1", *remote) == 0
        await until(srv.url, "c1", "RUNNING")
        assert await cli("start", "order_wf", "2", "--run-id", "c2", *remote) == 0
        assert await cli("cancel", "c2", *remote) == 0
        await until(srv.url, "c2", "TERMINATED")
        assert await cli("purge", "c2", *remote) == 0
        assert (await get_json(srv.url, "/v1.0/workflows/dapr/c2"))[0] == 404
        capsys.readouterr()
        assert await cli("cancel", "c2", *remote) == 1
        assert "HTTP 404" in capsys.readouterr().err
        assert await cli("cancel", "c1", "--server", srv.url, "--token", "wrong") == 1
        assert "HTTP 403" in capsys.readouterr().err
    # stopped with SIGTERM while c1 waits for its event: nothing is lost, it goes on
    async with served(world, "--workflows", WORKFLOWS) as srv:
        remote = ("--server", srv.url, "--token", TOKEN)
        assert await cli("raise-event", "c1", "approval", '"yes"', *remote) == 0
        state = await until(srv.url, "c1", "COMPLETED")
        assert state["properties"]["dapr.workflow.output"] == (
            '{"order":{"item":"pen"},"decision":"yes"}'
        )
        capsys.readouterr()
        assert await cli("rerun", "c1", *remote) == 0
        out = capsys.readouterr().out
        assert "(a rerun of c1)" in out
        new_id = out.split()[2]
        await until(srv.url, new_id, "RUNNING")
        fork = ("fork", "c1", "--input", '{"order": "ink"}', "--run-id", "k1")
        assert await cli(*fork, *remote) == 0
        assert "started run k1 (a fork of c1)" in capsys.readouterr().out
        await until(srv.url, "k1", "RUNNING")
        assert await cli("fork", "c1", "--from-step", "nope", *remote) == 1
        assert "HTTP 404" in capsys.readouterr().err
        assert await cli("fork", "c1", "--run-id", "k1", *remote) == 1
        assert "HTTP 409" in capsys.readouterr().err


async def test_a_control_plane_only_server_and_resume_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = f"file://{tmp_path / 'wf'}"
    async with served(world) as srv:  # no --workflows: it records and steers, runs nothing
        code, body = await get_json(srv.url, "/healthz")
        assert (code, body) == (200, {"status": "ok"})
        remote = ("--server", srv.url, "--token", TOKEN)
        assert await cli("resume-hook", "no-such-token", "{}", *remote) == 1
        assert "HTTP 404" in capsys.readouterr().err


async def test_refuses_a_public_address_without_a_token() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worldflow",
        "--world",
        "memory://",
        "serve",
        "--host",
        "0.0.0.0",
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "WORLDFLOW_TOKEN"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), START_WAIT)
    assert proc.returncode == 2
    assert b"refusing to serve on 0.0.0.0 without a token" in err


async def test_direct_actions_on_a_file_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ("--world", f"file://{tmp_path / 'wf'}")
    imports = ("--workflows", "tests.http.dapr_workflows")
    assert await cli(*world, "start", "order_wf", "5", "--run-id", "d1", *imports) == 0
    assert "started run d1" in capsys.readouterr().out
    assert await cli(*world, "suspend", "d1") == 0
    assert await cli(*world, "resume", "d1") == 0
    assert await cli(*world, "raise-event", "d1", "late", "1") == 0
    assert await cli(*world, "cancel", "d1", "--reason", "not needed") == 0
    assert await cli(*world, "start", "order_wf", "5", "--run-id", "d1", *imports) == 1
    assert "already exists" in capsys.readouterr().err
    assert await cli(*world, "fork", "d1", "--input", '{"order": 6}', "--run-id", "d2") == 0
    assert "started run d2 (a fork of d1)" in capsys.readouterr().out
    fw = await FileWorld(tmp_path / "wf").open()
    try:
        run = await fw.get_run("d1")
        assert run.status is RunStatus.CANCELLED
        assert run.cancel_reason == "not needed"
        fork = await fw.get_run("d2")
        assert (fork.forked_from, bytes(fork.input)) == ("d1", b'{"order":6}')
        types = [e.type for e in (await fw.list_events("d1")).items]
        assert {"run_suspended", "run_resumed", "event_raised", "run_cancelled"} <= set(types)
    finally:
        await fw.aclose()
    assert await cli(*world, "purge", "d1") == 0
    assert await cli(*world, "purge", "d1") == 1
    assert "RunNotFoundError" in capsys.readouterr().err
