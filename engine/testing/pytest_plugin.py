"""pytest fixtures for testing workflows: an engine on a memory world with a virtual clock.

Loaded automatically (a ``pytest11`` entry point) when worldflow is installed. The fixtures
are async where they must be: use them from async tests run by anyio's pytest plugin
(``@pytest.mark.anyio``) or pytest-asyncio (``asyncio_mode = "auto"``).

* ``worldflow_workflows``: the workflows the engine serves (``[]``; override it in your
  ``conftest.py`` so the engine recovers runs of yours; starting any ``@workflow`` works
  anyway).
* ``worldflow_clock``: a :class:`~worldflow.testing.VirtualClock` (auto-advancing).
* ``worldflow_world``: a ``MemoryWorld`` on that clock.
* ``worldflow_engine``: an entered ``Engine`` on that world.

Example::

    @pytest.mark.anyio
    async def test_reminder_after_three_days(worldflow_engine, worldflow_clock):
        run = await worldflow_engine.start(reminder, "u-1")
        assert await run.result(timeout=7 * 86400) == "reminded"
        assert worldflow_clock.now() >= DEFAULT_START + timedelta(days=3)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from worldflow._runtime.engine import Engine
from worldflow.testing._clock import VirtualClock
from worldflow.worlds import MemoryWorld


@pytest.fixture
def worldflow_workflows() -> list[Any]:
    """The workflows ``worldflow_engine`` serves; override to list yours."""
    return []


@pytest.fixture
def worldflow_clock() -> VirtualClock:
    """A virtual clock that jumps to the next timer whenever everything is blocked."""
    return VirtualClock()


@pytest.fixture
def worldflow_world(worldflow_clock: VirtualClock) -> MemoryWorld:
    """A fresh memory world on ``worldflow_clock``."""
    return MemoryWorld(clock=worldflow_clock)


@pytest.fixture
async def worldflow_engine(
    worldflow_world: MemoryWorld, worldflow_workflows: list[Any]
) -> AsyncIterator[Engine]:
    """An entered engine on ``worldflow_world`` (its clock is ``worldflow_clock``)."""
    async with Engine(worldflow_world, worldflow_workflows, consume_queues=False) as engine:
        yield engine
    await worldflow_world.aclose()
