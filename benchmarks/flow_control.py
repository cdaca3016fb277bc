"""What flow control costs: runs without limits (the hot path, which must not pay) and runs
under a world-held concurrency limit, on the memory world.

    .venv/bin/python -m benchmarks.flow_control [--runs 2000] [--only plain]
    perf stat -e instructions:u .venv/bin/python -m benchmarks.flow_control --only plain

Prints runs/s, appends per run and permit calls per run for each case. ``--only plain``
touches no flow-control API, so the same command measures a checkout from before flow
control existed (compare ``instructions:u``; wall-clock figures on a shared machine are
noise, so record the load average with them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from worldflow import Engine, step, workflow
from worldflow.worlds import MemoryWorld

_IN_FLIGHT = 100


@step
async def add_one(n: int) -> int:
    return n + 1


@workflow(name="bench:plain")
async def plain(n: int) -> int:
    return await add_one(await add_one(await add_one(n)))


def _limited() -> Any:
    from worldflow import Concurrency

    @workflow(name="bench:limited", concurrency=Concurrency(_IN_FLIGHT))
    async def limited(n: int) -> int:
        return await add_one(await add_one(await add_one(n)))

    return limited


class _Counting(MemoryWorld):
    """A memory world that counts appends (and permit asks, where the world has them)."""

    appends = 0
    permits = 0

    async def append(self, run_id: str, events: Any, **options: Any) -> Any:
        self.appends += 1
        return await super().append(run_id, events, **options)

    async def acquire_permit(self, *args: Any, **options: Any) -> Any:
        self.permits += 1
        return await super().acquire_permit(*args, **options)


async def _case(name: str, wf: Any, runs: int) -> None:
    world = _Counting()
    async with Engine(world, [wf]) as engine:
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def one(n: int) -> None:
            async with gate:
                run = await engine.start(wf, n)
                assert await run.result(timeout=120) == n + 3

        began = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(runs)))
        seconds = time.perf_counter() - began
    print(
        f"{name:8} {runs} runs in {seconds:.2f}s = {runs / seconds:,.0f} runs/s; "
        f"{world.appends / runs:.2f} appends/run, {world.permits / runs:.2f} permit asks/run; "
        f"load {os.getloadavg()[0]:.2f}"
    )


async def _main(runs: int, only: str | None) -> None:
    if only in (None, "plain"):
        await _case("plain", plain, runs)
    if only in (None, "limited"):
        await _case("limited", _limited(), runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--only", choices=["plain", "limited"])
    options = parser.parse_args()
    asyncio.run(_main(options.runs, options.only))
