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
from worldflow.worlds import FileWorld, MemoryWorld, World, open_world
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


WORLD_FACTORIES = [
    pytest.param(memory_world, id="memory"),
    pytest.param(file_world, id="file"),
    pytest.param(
        postgres_world,
        id="postgres",
        marks=pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
    ),
]

STATE_MACHINE_EXAMPLES: dict[WorldFactory, int] = {file_world: 75, postgres_world: 50}
"""Smaller default budgets of the state machine for worlds whose every write waits for the
disk (a few hundred examples of fsync'd appends take a minute on a busy machine); ``--slow``
runs the full budget on every world."""
