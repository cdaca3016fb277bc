"""A fixture for engine tests that must hold on the memory world and on the file world.

``world`` is a fresh world on a :class:`~worldflow.testing.VirtualClock` (timers jump), the
memory world or a file world in a temporary directory; ``reopen()`` gives a file world on
the same directory (a restart), or the same memory world.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from worldflow.testing import VirtualClock
from worldflow.worlds import FileWorld, MemoryWorld

__all__ = ["Worlds", "worlds"]


class Worlds:
    """Makes the test's world (and its restarts) on one clock."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        # The file world writes in a thread the clock cannot see: let it be quiet a moment
        # before each jump, so time does not run ahead of a write in flight.
        self.clock = VirtualClock(idle_delay=0.05 if kind == "file" else 0.0)
        self._open: list[MemoryWorld] = []
        self._memory: MemoryWorld | None = None

    async def open(self) -> MemoryWorld:
        """The world: a new file world on the directory (a restart), or the memory world."""
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryWorld(clock=self.clock)
                self._open.append(self._memory)
            return self._memory
        for world in self._open:
            await world.aclose()
        self._open.clear()
        world = await FileWorld(self.path, fsync=False, clock=self.clock).open()
        self._open.append(world)
        return world

    async def aclose(self) -> None:
        for world in self._open:
            await world.aclose()


@pytest.fixture(params=["memory", "file"])
async def worlds(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worlds]:
    """Worlds of the parametrized kind, closed after the test."""
    made = Worlds(request.param, tmp_path / "world")
    yield made
    await made.aclose()
