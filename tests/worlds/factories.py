"""Every world the shared suites run against: add a world here and it gets the whole suite.

Each entry is a :data:`~worldflow.worlds.testing.WorldFactory`: given a scratch directory, an
async context manager that opens a fresh, empty world and closes it on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.worlds import postgres_db
from tests.worlds.served import served
from worldflow.worlds import FileWorld, MemoryWorld, World, open_world
from worldflow.worlds._file.writer import WAL_FILE, _frames
from worldflow.worlds._remote import RemoteWorld
from worldflow.worlds.testing import WorldFactory


@asynccontextmanager
async def memory_world(path: Path) -> AsyncIterator[World]:
    world = MemoryWorld()
    try:
        yield world
    finally:
        await world.aclose()


@asynccontextmanager
async def file_world(path: Path) -> AsyncIterator[World]:
    async with FileWorld(path / "world", fsync=True) as world:
        yield world


@asynccontextmanager
async def postgres_world(path: Path) -> AsyncIterator[World]:
    async with postgres_db.fresh_schema() as url:
        world = await open_world(url)
        try:
            yield world
        finally:
            await world.aclose()


def remote(hosted: WorldFactory) -> WorldFactory:
    """The world ``hosted`` opens, served over a real socket and used through RemoteWorld."""

    @asynccontextmanager
    async def remote_world(path: Path) -> AsyncIterator[World]:
        async with hosted(path) as world, served(world) as url:
            remote = await RemoteWorld.from_url(url)
            try:
                yield remote
            finally:
                await remote.aclose()

    remote_world.__name__ = f"remote_{hosted.__name__}"
    return remote_world


remote_memory_world = remote(memory_world)
remote_file_world = remote(file_world)


def file_power_cut(path: Path) -> None:
    """Damage the file world in ``path`` as a power cut would.

    Everything written since the last checkpoint is in the journal and may not have reached
    the files: per file, those bytes are lost (the file cut where they began, or zeros where
    they were, or a new file gone), and blocks of writes never acknowledged lie behind them
    (zeros, a stray line). The world must put back every journaled write and cut the debris.
    """
    root = path / "world"
    frames, _ = _frames((root / WAL_FILE).read_bytes())
    starts: dict[str, int] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for frame in frames:
        if frame.op == "w":
            starts[frame.path] = min(starts.get(frame.path, frame.offset), frame.offset)
            spans.setdefault(frame.path, []).append((frame.offset, len(frame.data)))
        elif frame.op == "x":
            starts.pop(frame.path, None)
            spans.pop(frame.path, None)
    for number, (rel, start) in enumerate(sorted(starts.items())):
        file = root / rel
        if not file.exists():
            continue
        data = bytearray(file.read_bytes())
        if number % 3 == 0 and start == 0:
            file.unlink()  # a new file whose directory entry never reached the disk
            continue
        if number % 3 == 1:
            del data[start:]
        else:
            for offset, length in spans[rel]:
                data[offset : offset + length] = bytes(len(data[offset : offset + length]))
        data += bytes(24) + b"\n" + b'{"debris":true}\n' + bytes(12)
        file.write_bytes(bytes(data))


WORLD_FACTORIES = [
    pytest.param(memory_world, id="memory"),
    pytest.param(file_world, id="file"),
    pytest.param(
        postgres_world,
        id="postgres",
        marks=pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
    ),
    pytest.param(remote_memory_world, id="remote-memory"),
    pytest.param(remote_file_world, id="remote-file"),
]

STATE_MACHINE_EXAMPLES: dict[WorldFactory, int] = {
    postgres_world: 50,
    remote_memory_world: 30,
    remote_file_world: 20,
}
"""Smaller default budgets of the state machine for worlds whose every write waits for a
server (PostgreSQL, a socket); ``--slow`` runs the full budget on every world. (The file
world runs memory's budget: it is the world with the most ways to lose a write.)"""

REOPENS: dict[WorldFactory, Callable[[Path], None] | None] = {file_world: file_power_cut}
"""Worlds that keep their data, with how a power cut damages them (``None``: reopen only)."""
