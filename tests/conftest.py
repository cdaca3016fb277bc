"""Shared pytest setup: the anyio backend, the ``--slow`` switch for long runs, and the
memory-or-file ``world`` fixture (a test module or folder may define its own ``world``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from worldflow.worlds import FileWorld, MemoryWorld, World


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run long property and crash tests with their full budgets",
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def slow(request: pytest.FixtureRequest) -> bool:
    """True when the run asked for the long budgets (``--slow``)."""
    return bool(request.config.getoption("--slow"))


@pytest.fixture(params=["memory", "file"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """A fresh memory world or file world (real clock), closed after the test."""
    if request.param == "memory":
        async with MemoryWorld() as memory:
            yield memory
    else:
        async with FileWorld(tmp_path / "world") as file_world:
            yield file_world


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the scratch PostgreSQL database the session made, if it made one."""
    import sys

    module = sys.modules.get("tests.worlds.postgres_db")
    if module is not None and module._database is not None:
        import asyncio

        asyncio.run(module.drop_database())
