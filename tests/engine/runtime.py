"""Helpers for the runtime tests: an engine on a memory world, and waiting on a run's log.

Nothing here sleeps to wait: waiting is on the world's notifications (``Run.events()``,
``Run.result()``), each bounded by a timeout so a broken engine fails fast.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from worldflow import Engine, EventInfo, Run
from worldflow.worlds import AnyEvent, World

WAIT = 10.0
"""Upper bound for any wait in these tests (they finish in milliseconds when all is well)."""


@asynccontextmanager
async def running(world: World, workflows: Iterable[Any], **options: Any) -> AsyncIterator[Engine]:
    """An entered engine on ``world`` serving ``workflows``."""
    async with Engine(world, workflows, **options) as engine:
        yield engine


async def result_of(run: Run) -> Any:
    """``run.result()``, bounded by :data:`WAIT` seconds of real time.

    ``run.result(timeout=)`` sleeps on the world's clock. On a virtual clock beside a file
    world that sleep is the earliest pending deadline, and the clock cannot see the file
    world's writer thread: under load a write outlasts ``idle_delay``, the loop looks idle,
    and the clock jumps straight to the timeout while the run is still being driven. A
    safety net is not the subject of a test, so this one is real time.
    """
    async with asyncio.timeout(WAIT):
        return await run.result()


async def log_of(world: World, run_id: str) -> list[AnyEvent]:
    """The run's whole event log."""
    return list((await world.list_events(run_id)).items)


async def types_of(world: World, run_id: str) -> list[str]:
    """The types of the run's events, in order."""
    return [e.type for e in await log_of(world, run_id)]


async def wait_for(
    run: Run, predicate: Callable[[EventInfo], bool], *, timeout: float = WAIT
) -> EventInfo:
    """The first event of the run's log (from the start) that satisfies ``predicate``."""
    async with asyncio.timeout(timeout):
        async for event in run.events():
            if predicate(event):
                return event
    raise AssertionError(f"run {run.run_id} ended without the awaited event")


async def wait_for_type(run: Run, event_type: str, *, nth: int = 1) -> EventInfo:
    """The ``nth`` event of type ``event_type`` in the run's log."""
    seen = 0

    def match(event: EventInfo) -> bool:
        nonlocal seen
        if event.type == event_type:
            seen += 1
        return seen >= nth and event.type == event_type

    return await wait_for(run, match)


async def step_results(world: World, run_id: str) -> Counter[str]:
    """How many results (``step_completed`` / ``step_failed``) each step id has in the log."""
    return Counter(
        e.correlation_id or ""
        for e in await log_of(world, run_id)
        if e.type in ("step_completed", "step_failed")
    )


async def assert_results_once(world: World, run_id: str) -> None:
    """Every step's result is recorded exactly once."""
    twice = {k: v for k, v in (await step_results(world, run_id)).items() if v != 1}
    assert not twice, f"step results recorded more than once: {twice}"
