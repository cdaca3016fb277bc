"""W7 scale: 10,000 runs parked on hooks at once; the RSS that costs, and the time to resume
them all.

It runs in a child process (``python -m benchmarks._scale``) so the RSS is that of an engine
process holding the parked runs, not of a benchmark process that ran other workloads before.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import uuid
from typing import Any

from benchmarks import _flows
from benchmarks._audit import audit_runs, wait_until_parked
from benchmarks._measure import Outcome, rss_mib, stopwatch
from benchmarks._process import Child, emit
from benchmarks._worlds import Cell

__all__ = ["w7_scale"]

_MODULE = "benchmarks._scale"
_STARTS_IN_FLIGHT = 100
"""How many start() calls a client keeps going at once while parking the runs."""


async def w7_scale(cell: Cell) -> Outcome:
    """Run W7 on ``cell.world`` in a child process; return its figures and checks.

    The child reports twice: once every run is parked (RSS, time to park), then when every run
    has been resumed and checked, so a slow resume still leaves the RSS figures.
    """
    outcome, key = Outcome(), uuid.uuid4().hex[:10]
    phase = cell.sizes.timeout / 2
    child = await Child.spawn(
        _MODULE,
        f"--url={cell.fresh_url()}",
        f"--key={key}",
        f"--runs={cell.sizes.w7_runs}",
        f"--timeout={phase}",
        log=cell.scratch / f"w7-{key}.log",
    )
    try:
        for what in ("parked", "resumed"):
            try:
                async with asyncio.timeout(phase):
                    report = await child.message()
            except TimeoutError:
                outcome.check(f"all runs {what}", False, f"not within {phase:g} s")
                break
            outcome.figures.update(report["figures"])
            outcome.checks.extend((name, ok, detail) for name, ok, detail in report["checks"])
    finally:
        await child.aclose()
    return outcome


async def _child(args: argparse.Namespace) -> None:
    from worldflow import Engine, open_world

    outcome = Outcome()
    tokens = [f"w7-{args.key}-{i}" for i in range(args.runs)]
    world = await open_world(args.url)
    try:
        async with Engine(world=world, workflows=[_flows.wait_hook]) as engine:
            gc.collect()
            baseline = rss_mib()
            gate = asyncio.Semaphore(_STARTS_IN_FLIGHT)

            async def start(i: int, token: str) -> Any:
                async with gate:
                    return await engine.start(_flows.wait_hook, token, i, run_id=token)

            with stopwatch() as parking:
                runs = await asyncio.gather(*(start(i, t) for i, t in enumerate(tokens)))
                for token in tokens:
                    await wait_until_parked(world, token, timeout=args.timeout)
            gc.collect()
            rss = rss_mib()
            emit(
                figures={
                    "rss_mib": rss,
                    "rss_growth_mib": rss - baseline,
                    "park_all_s": parking.elapsed,
                },
                checks=[],
            )
            with stopwatch() as resuming:
                await asyncio.gather(*(engine.resume_hook(token, 1) for token in tokens))
                results = await asyncio.gather(*(r.result(timeout=args.timeout) for r in runs))
        outcome.check_equal("results right", results, [i + 1 for i in range(args.runs)])
        await audit_runs(outcome, world, tokens, 0)
    finally:
        await world.aclose()
    emit(figures={"resume_all_s": resuming.elapsed}, checks=outcome.checks)


def main(argv: list[str] | None = None) -> None:
    """The child: park ``--runs`` runs on hooks, measure, resume them all, report."""
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    asyncio.run(_child(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
