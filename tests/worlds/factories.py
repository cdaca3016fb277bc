"""Every world the shared suites run against: add a world here and it gets the whole suite.

Each entry is a :data:`~worldflow.worlds.testing.WorldFactory`: given a scratch directory, an
async context manager that opens a fresh, empty world and closes it on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.worlds import postgres_db
from tests.worlds.served import served
from worldflow.worlds import FileWorld, MemoryWorld, World, open_world
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
    file_world: 75,
    postgres_world: 50,
    remote_memory_world: 30,
    remote_file_world: 20,
}
"""Smaller default budgets of the state machine for worlds whose every write waits for the
disk (a few hundred examples of fsync'd appends take a minute on a busy machine); ``--slow``
runs the full budget on every world."""
