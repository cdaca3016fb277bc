"""Shared pytest setup: the anyio backend, and the ``--slow`` switch for long runs."""

from __future__ import annotations

import pytest


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the scratch PostgreSQL database the session made, if it made one."""
    import sys

    module = sys.modules.get("tests.worlds.postgres_db")
    if module is not None and module._database is not None:
        import asyncio

        asyncio.run(module.drop_database())
