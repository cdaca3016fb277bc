"""Fixtures shared by the HTTP tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from worldflow.worlds import FileWorld, MemoryWorld, World


@pytest.fixture(params=["memory", "file"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """A fresh memory world or file world (real clock), closed after the test."""
    if request.param == "memory":
        async with MemoryWorld() as memory:
            yield memory
    else:
        async with FileWorld(tmp_path / "world") as file_world:
            yield file_world
