"""An engine for tests: a fresh memory world on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from worldflow._registry import Registrable
from worldflow._runtime.engine import Engine
from worldflow.testing._clock import VirtualClock
from worldflow.worlds import MemoryWorld

__all__ = ["memory_engine"]


@asynccontextmanager
async def memory_engine(
    workflows: Iterable[Registrable] = (),
    *,
    clock: VirtualClock | None = None,
    **options: Any,
) -> AsyncIterator[Engine]:
    """An entered :class:`~worldflow.Engine` on a new ``MemoryWorld`` with a virtual clock.

    Sleeps, timeouts, retry backoffs and ``Run.result(timeout=)`` all run on the clock, which
    jumps ahead whenever everything is blocked, so a workflow that sleeps for days finishes
    in milliseconds. The clock is ``engine.clock`` (pass your own to control it).

    The engine drives the runs it starts itself and does not consume the world's queues
    (``consume_queues=False``): with nobody else on the world they carry nothing, and their
    periodic lease waits would make the clock crawl forward in small steps. Other keyword
    arguments go to :class:`~worldflow.Engine`.

    Example::

        async with memory_engine([onboarding]) as engine:
            run = await engine.start(onboarding, "u-1")
            assert await run.result(timeout=30 * 86400) == "welcomed"
    """
    clock = clock if clock is not None else VirtualClock()
    options.setdefault("consume_queues", False)
    world = MemoryWorld(clock=clock)
    try:
        async with Engine(world, workflows, **options) as engine:
            yield engine
    finally:
        await world.aclose()
