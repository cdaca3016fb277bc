"""The cost of a step in counts: appends, syncs and feeds per step and per run (W1's shape).

Counts do not depend on the machine's load, so they compare before/after on a shared
machine; run the process under ``perf stat -e instructions:u`` at two sizes and divide the
difference by the difference in steps for instructions per step::

    python -m benchmarks.cost --world file --runs 1000
    perf stat -e instructions:u python -m benchmarks.cost --world memory --runs 200
    perf stat -e instructions:u python -m benchmarks.cost --world memory --runs 1200
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from typing import Any

from benchmarks import _flows
from benchmarks._measure import disk_syncs
from worldflow import Engine
from worldflow.worlds import AnyEvent, EventResult, World, open_world


class _Counted:
    """Counts ``append`` calls on a world (everything else passes through)."""

    def __init__(self, world: World) -> None:
        self.appends = 0
        self._world = world
        real = world.append

        async def append(run_id: str, events: Sequence[AnyEvent], **options: Any) -> EventResult:
            self.appends += 1
            return await real(run_id, events, **options)

        world.append = append  # type: ignore[method-assign]


async def _main(world_name: str, runs: int, steps: int, in_flight: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=".") as root:
        url = "memory://" if world_name == "memory" else f"file://{root}/w"
        world = await open_world(url)
        counted = _Counted(world)
        # ttl=None: no heartbeats or orphan sweeps, whose number depends on the wall time
        # (under callgrind, a loaded machine missed beats: the engine was declared dead)
        async with Engine(world=world, workflows=[_flows.chain], ttl=None) as engine:
            gate = asyncio.Semaphore(in_flight)

            async def one(i: int) -> Any:
                async with gate:
                    run = await engine.start(_flows.chain, i, steps, run_id=f"c-{i}")
                    return await run.result(timeout=600)

            counted.appends = 0
            syncs_before = disk_syncs(world)
            results = await asyncio.gather(*(one(i) for i in range(runs)))
            syncs_after = disk_syncs(world)
        await world.aclose()
    assert results == [i + steps for i in range(runs)], "wrong results"
    return _figures(counted.appends, syncs_before, syncs_after, runs, steps)


def _figures(
    appends: int, syncs_before: int | None, syncs_after: int | None, runs: int, steps: int
) -> dict[str, float]:
    """The totals, and the counts per step and per run when there was work to divide by.

    ``--runs 0`` measures the start-up alone (a callgrind baseline): its totals are printed,
    its per-unit figures are not (there is nothing to divide by).
    """
    figures: dict[str, float] = {"appends": appends}
    syncs = None if syncs_before is None or syncs_after is None else syncs_after - syncs_before
    if syncs is not None:
        figures["syncs"] = syncs
    if runs * steps > 0:
        figures["appends_per_step"] = appends / (runs * steps)
    if runs > 0:
        figures["appends_per_run"] = appends / runs
        if syncs is not None:
            figures["syncs_per_run"] = syncs / runs
    return figures


def main() -> None:
    """Parse the options, run, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="memory", choices=["memory", "file"])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    if args.runs < 0 or args.steps < 0 or args.in_flight < 1:
        parser.error("--runs and --steps must be >= 0, --in-flight >= 1")
    figures = asyncio.run(_main(args.world, args.runs, args.steps, args.in_flight))
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")


if __name__ == "__main__":
    main()
