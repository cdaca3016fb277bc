"""W3 from another process: a child that resumes hooks of runs another process drives.

The parent (``w3_cross_process``) runs an engine on a world that processes share (PostgreSQL)
and parks runs on hooks; this child, ``python -m benchmarks._resumer --url=...``, holds a
:class:`~worldflow.Client` (no workflow code) on the same world, reads one hook token per
line on stdin, resumes it and reports. The parent times each round trip from writing the
token to its own ``Run.result()``: the child's append, the hand-over to the owner through
the database (queue message and notification), the owner's drive and the run's end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

from benchmarks import _flows
from benchmarks._audit import audit_runs, wait_until_parked
from benchmarks._measure import Outcome, percentile
from benchmarks._process import Child, emit
from benchmarks._worlds import Cell, opened

__all__ = ["w3_cross_process"]

_MODULE = "benchmarks._resumer"
_RESULT_TIMEOUT = 300.0


async def w3_cross_process(cell: Cell) -> Outcome:
    """W3 with the hook resumed by another process: p50 / p99 from the child's resume to
    the owner's result."""
    from worldflow import Engine

    sizes, outcome, key = cell.sizes, Outcome(), uuid.uuid4().hex[:10]
    url = cell.fresh_url()
    async with opened(url) as world:
        async with Engine(world=world, workflows=[_flows.wait_hook]) as engine:
            child = await Child.spawn(
                _MODULE, f"--url={url}", stdin=True, log=cell.scratch / f"w3x-{key}.log"
            )
            try:
                await child.message()  # ready
                latencies, results = [], []
                for i in range(sizes.w3_runs):
                    token = f"w3x-{key}-{i}"
                    run = await engine.start(_flows.wait_hook, token, i, run_id=token)
                    await wait_until_parked(world, token, timeout=_RESULT_TIMEOUT)
                    started = time.perf_counter()
                    await child.send(token)
                    results.append(await run.result(timeout=_RESULT_TIMEOUT))
                    latencies.append(time.perf_counter() - started)
                    reply = await child.message()
                    if reply.get("resumed") != token:
                        raise RuntimeError(f"the resuming process answered {reply!r}")
            finally:
                await child.aclose()
        outcome.figures = {
            "xproc_p50_ms": percentile(latencies, 50) * 1000,
            "xproc_p99_ms": percentile(latencies, 99) * 1000,
        }
        outcome.check_equal(
            "results right (resumed from another process)",
            results,
            [i + 1 for i in range(sizes.w3_runs)],
        )
        await audit_runs(outcome, world, [f"w3x-{key}-{i}" for i in range(sizes.w3_runs)], 0)
    return outcome


async def _child(url: str) -> None:
    from worldflow import Client, open_world

    world = await open_world(url)
    try:
        client = Client(world)
        emit(ready=True)
        loop = asyncio.get_running_loop()
        while True:
            line: Any = await loop.run_in_executor(None, sys.stdin.readline)
            token = line.strip()
            if not token:
                return  # stdin closed: the parent is done
            await client.resume_hook(token, 1)
            emit(resumed=token)
    finally:
        await world.aclose()


def main(argv: list[str] | None = None) -> None:
    """The child: resume the hook of every token read on stdin until stdin closes."""
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    parser.add_argument("--url", required=True)
    asyncio.run(_child(parser.parse_args(argv).url))


if __name__ == "__main__":
    main(sys.argv[1:])
