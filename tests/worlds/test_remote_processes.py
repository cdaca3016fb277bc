"""Many processes on one served world: ``worldflow serve --world file://...`` hosting a file
world's World API and three engine processes on ``http://...``; one engine is killed with
SIGKILL mid-flight and the server restarts once. Every run must complete with the right
result, no step result may be recorded twice, and no hook payload may be lost once
``resume_hook`` returned."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.worlds.remote_engine import expected
from worldflow import Client
from worldflow.errors import HookNotFoundError
from worldflow.worlds import HookReceived, StepCompleted, World, open_world

pytestmark = pytest.mark.anyio

RUNS = 24
WORKFLOW = "tests.worlds.remote_engine:relay"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WORLDFLOW_TOKEN", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _until(world: World, done: object, *, timeout: float = 120.0) -> None:
    """Wait for ``done()`` to hold, woken by the world's changes (no fixed sleeps)."""
    check = done  # a callable returning an awaitable bool
    async with asyncio.timeout(timeout):
        while True:
            changes = await world.wait_for_world(after=0, timeout=0)
            if await check():  # type: ignore[operator]
                return
            await world.wait_for_world(after=changes, timeout=1.0)


async def _parked(world: World, i: int) -> bool:
    try:
        await world.get_hook_by_token(f"relay-{i}")
    except HookNotFoundError:
        return False
    return True


async def _serving(server: subprocess.Popen[bytes], log: Path, *, times: int) -> None:
    """Wait until ``log`` says the server is listening for the ``times``-th time (its
    imports can take longer than a client's connect budget on a loaded machine)."""
    async with asyncio.timeout(120):
        while (await asyncio.to_thread(log.read_text)).count("worldflow serving on") < times:
            assert server.poll() is None, await asyncio.to_thread(log.read_text)
            await asyncio.sleep(0.1)


def _serve_args(world_dir: Path, port: int) -> list[str]:
    """The ``worldflow serve`` command line a user would type (a control plane, no engine)."""
    return ["-m", "worldflow", "--world", f"file://{world_dir}", "serve", "--port", str(port)]


@pytest.mark.timeout(300)
async def test_engine_processes_share_a_served_file_world(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    world_dir = tmp_path / "world"
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    logs = tmp_path / "logs"
    logs.mkdir()
    with _processes() as procs:
        server = _spawn(_serve_args(world_dir, port), logs / "server.log")
        procs.append(server)
        await _serving(server, logs / "server.log", times=1)
        world = await open_world(url)
        try:
            engines = [
                _spawn(
                    ["-m", "tests.worlds.remote_engine", url, str(ledger)],
                    logs / f"engine-{n}.log",
                )
                for n in range(3)
            ]
            procs.extend(engines)

            async def three_engines() -> bool:
                return len(await world.list_engines()) >= 3

            await _until(world, three_engines)
            client = Client(world)
            runs = [await client.start(WORKFLOW, i, run_id=f"relay-run-{i}") for i in range(RUNS)]

            async def a_third_parked() -> bool:
                parked = [await _parked(world, i) for i in range(RUNS)]
                return sum(parked) >= RUNS // 3

            await _until(world, a_third_parked)
            engines[0].send_signal(signal.SIGKILL)  # mid-flight: steps running, runs owned
            engines[0].wait()

            resumed: set[int] = set()

            async def resume_parked() -> None:
                for i in range(RUNS):
                    if i not in resumed and await _parked(world, i):
                        await client.resume_hook(f"relay-{i}", 10 * i)
                        resumed.add(i)  # from here on, the payload must not be lost

            await resume_parked()
            assert resumed

            server.send_signal(signal.SIGTERM)  # the server restarts once
            assert server.wait(timeout=60) == 0
            server = _spawn(_serve_args(world_dir, port), logs / "server.log")
            procs.append(server)
            await _serving(server, logs / "server.log", times=2)

            async def all_resumed() -> bool:
                await resume_parked()
                return len(resumed) == RUNS

            await _until(world, all_resumed, timeout=180)
            results = [await run.result(timeout=180) for run in runs]
            assert results == [expected(i, 10 * i) for i in range(RUNS)]

            for run in runs:
                events = (await world.list_events(run.run_id)).items
                completed = Counter(
                    e.correlation_id for e in events if isinstance(e, StepCompleted)
                )
                assert len(completed) == 4, run.run_id
                assert set(completed.values()) == {1}, f"{run.run_id}: a step recorded twice"
                received = [e for e in events if isinstance(e, HookReceived)]
                assert len(received) == 1, f"{run.run_id}: hook payloads {received}"
            executed = Counter(tuple(line.split()[:2]) for line in ledger.read_text().splitlines())
            assert len(executed) == 4 * RUNS  # every step ran (some twice: at least once)
        finally:
            await world.aclose()
