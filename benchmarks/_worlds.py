"""The worlds the suite runs on, and how to open a fresh one for each workload.

``memory`` and ``file`` (fsync on) run wherever worldflow runs. ``remote`` is a file world
served by ``worldflow serve`` in a child process (one per fresh world, so the engine is in
another process than the server and the figures compare with ``file`` used locally), or the
server at ``WORLDFLOW_BENCH_REMOTE_URL``. ``postgres`` needs a server: the suite tries it and
skips it with a note when it is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from benchmarks._sizes import Sizes
from worldflow import open_world
from worldflow.worlds import World

__all__ = [
    "WORLDS",
    "Cell",
    "WorldSpec",
    "WorldUnavailable",
    "fresh_url",
    "opened",
    "probe",
    "stop_servers",
]

POSTGRES_ENV: Final = "WORLDFLOW_BENCH_POSTGRES_URL"
REMOTE_ENV: Final = "WORLDFLOW_BENCH_REMOTE_URL"
_PROBE_TIMEOUT: Final = 5.0
_STOP_TIMEOUT: Final = 30.0

_SERVERS: list[subprocess.Popen[bytes]] = []


class WorldUnavailable(Exception):
    """The world cannot be opened here; the message says why and how to enable it."""


@dataclass(frozen=True)
class WorldSpec:
    """A world the suite knows: its table name, whether it survives a process, and whether
    several processes may use it at once (W3 then also resumes from another process, and W5
    runs three engines)."""

    name: str
    durable: bool
    shared: bool = False

    def url(self, directory: Path) -> str:
        """The URL of a fresh instance of this world; ``directory`` is empty and its own.

        Raises:
            WorldUnavailable: the world needs a server that was not given.
        """
        if self.name == "memory":
            return "memory://"
        if self.name == "file":
            return f"file://{directory}"
        env = POSTGRES_ENV if self.name == "postgres" else REMOTE_ENV
        url = os.environ.get(env)
        if not url and self.name == "remote":
            return _serve_file_world(directory)
        if not url:
            raise WorldUnavailable(f"set {env} to a {self.name} world URL to include it")
        return url


def _serve_file_world(directory: Path) -> str:
    """Start ``worldflow serve --world file://DIRECTORY --port 0`` in a child process and
    return its URL once it listens. One served world at a time: starting one ends the one
    before (the workload that used it has finished); :func:`stop_servers` ends the last.

    Raises:
        WorldUnavailable: the server exited or did not listen in time.
    """
    stop_servers()
    world_dir = directory / "world"
    command = [sys.executable, "-m", "worldflow", "--world", f"file://{world_dir}"]
    command += ["serve", "--port", "0"]
    env = {key: value for key, value in os.environ.items() if key != "WORLDFLOW_TOKEN"}
    with (directory / "server.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env)
    _SERVERS.append(server)
    assert server.stdout is not None
    # The first line names the bound URL: "worldflow serving on http://127.0.0.1:PORT (...)".
    # A blocking read: nothing else runs between workloads.
    line = server.stdout.readline().decode(errors="replace")
    prefix = "worldflow serving on "
    if not line.startswith(prefix):
        server.kill()
        raise WorldUnavailable(f"worldflow serve did not start: {line.strip() or 'no output'}")
    return line[len(prefix) :].split()[0]


def stop_servers() -> None:
    """End every server :func:`WorldSpec.url` started (SIGTERM, then SIGKILL)."""
    while _SERVERS:
        server = _SERVERS.pop()
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


WORLDS: Final = (
    WorldSpec("memory", durable=False),
    WorldSpec("file", durable=True),
    WorldSpec("remote", durable=True),
    WorldSpec("postgres", durable=True, shared=True),
)


async def _open(url: str) -> World:
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            return await open_world(url)
    except TimeoutError:
        raise WorldUnavailable(f"{url} did not answer within {_PROBE_TIMEOUT:g} s") from None
    except Exception as exc:
        raise WorldUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def probe(spec: WorldSpec, directory: Path) -> None:
    """Open and close the world once.

    Raises:
        WorldUnavailable: with the reason, to print as the skip note.
    """
    world = await _open(spec.url(directory))
    await world.aclose()


def fresh_url(spec: WorldSpec, scratch: Path) -> str:
    """The URL of a world with nothing in it (a new directory under ``scratch`` for ``file``).

    A postgres URL gets a fresh schema of its own. A remote server cannot be emptied;
    workloads keep apart there by using run ids and hook tokens of their own.
    """
    directory = scratch / f"{spec.name}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    url = spec.url(directory)
    if spec.name == "postgres":  # a schema of its own: created on open, empty
        url += ("&" if "?" in url else "?") + f"schema=bench_{uuid.uuid4().hex[:12]}"
    return url


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[World]:
    """The world at ``url``, closed on the way out."""
    world = await _open(url)
    try:
        yield world
    finally:
        await world.aclose()


@dataclass(frozen=True)
class Cell:
    """Where one workload runs: the world, the sizes, a scratch directory."""

    world: WorldSpec
    sizes: Sizes
    scratch: Path

    def fresh_url(self) -> str:
        """The URL of a fresh, empty instance of the world."""
        return fresh_url(self.world, self.scratch)

    def fresh_world(self) -> contextlib.AbstractAsyncContextManager[World]:
        """A fresh, empty instance of the world, open for the block."""
        return opened(self.fresh_url())
