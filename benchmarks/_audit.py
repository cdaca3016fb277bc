"""Reading a world's logs back after a workload: nothing lost, nothing recorded twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from benchmarks._measure import Outcome
from worldflow.worlds import (
    AnyEvent,
    HookCreated,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStatus,
    StepCompleted,
    World,
)

__all__ = ["audit_runs", "read_log", "wait_until_parked"]


async def read_log(world: World, run_id: str, *, after_seq: int = 0) -> list[AnyEvent]:
    """Every event of the run after ``after_seq``, following the pages."""
    events: list[AnyEvent] = []
    while True:
        page = await world.list_events(run_id, after_seq=after_seq)
        events.extend(page.items)
        if not page.has_more or not page.items:
            return events
        after_seq = page.items[-1].seq


async def audit_runs(
    outcome: Outcome, world: World, run_ids: Sequence[str], steps_per_run: int | None
) -> None:
    """Check from the world's own records that every run completed (0 lost), that no step has
    two ``step_completed`` events (0 recorded twice) and, when given, that each run recorded
    ``steps_per_run`` step results."""
    lost: list[str] = []
    twice: list[str] = []
    short: list[str] = []
    for run_id in run_ids:
        run = await world.get_run(run_id)
        if run.status != RunStatus.COMPLETED:
            lost.append(f"{run_id} ({run.status})")
        completions = Counter(
            e.correlation_id for e in await read_log(world, run_id) if isinstance(e, StepCompleted)
        )
        twice.extend(f"{run_id}/{step}" for step, n in completions.items() if n > 1)
        if steps_per_run is not None and len(completions) != steps_per_run:
            short.append(f"{run_id} ({len(completions)})")
    outcome.check("0 lost", not lost, _some(lost, "not completed"))
    outcome.check("0 recorded twice", not twice, _some(twice, "with two step_completed"))
    if steps_per_run is not None:
        outcome.check(
            "every step recorded once",
            not short,
            _some(short, f"without {steps_per_run} step results"),
        )


def _some(items: Sequence[str], what: str) -> str:
    if not items:
        return ""
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return f"{len(items)} {what}: {', '.join(items[:5])}{more}"


async def wait_until_parked(world: World, run_id: str, *, timeout: float) -> None:
    """Wait (on the world's notifications, not by polling) until the run has created a hook.

    Raises:
        RuntimeError: the run ended before creating one.
        TimeoutError: nothing happened for ``timeout`` seconds.
    """
    seq = 0
    async with asyncio.timeout(timeout):
        while True:
            for event in await read_log(world, run_id, after_seq=seq):
                if isinstance(event, HookCreated):
                    return
                if isinstance(event, RunCompleted | RunFailed | RunCancelled):
                    raise RuntimeError(f"run {run_id} ended ({event.type}) before parking")
                seq = event.seq
            await world.wait_for_run(run_id, after_seq=seq)
