"""A worker process for the file world's crash test (``test_file_crash.py``).

``python -m tests.worlds.crash_worker DIR RUNS`` opens the file world in ``DIR`` (fsync on),
starts runs ``run-0000`` ... (or finds them already started), drives them all to their end
and prints ``done``. Each step attempt prints ``step`` first, so the test can kill this
process with SIGKILL after a chosen amount of progress.
"""

from __future__ import annotations

import asyncio
import sys

from worldflow import Engine, EntityConflictError, Run, step, workflow
from worldflow.worlds import FileWorld

CHAIN = 4  # steps in sequence, then two in parallel


# An attempt a kill cuts short counts against max_lost_attempts (3 by default): with --slow's
# dozen kills one step can be in flight at four of them and its run would fail (seen with
# SEED=2759240228). This test is about what is recorded, not about the limits.
@step(name="crash.add", max_retries=100, max_lost_attempts=100)
async def add(x: int, n: int) -> int:
    print("step", flush=True)
    await asyncio.sleep(0.001 * (n % 3))  # spread the attempts a little
    return x + n


@workflow(name="crash.chain")
async def chain(seed: int) -> int:
    x = seed
    for n in range(CHAIN):
        x = await add(x, n)
    a, b = await asyncio.gather(add(x, 100), add(x, 200))
    return a + b - x


def expected(seed: int) -> int:
    """What ``chain(seed)`` returns."""
    return seed + sum(range(CHAIN)) + 300


def run_id(i: int) -> str:
    return f"run-{i:04d}"


async def main(directory: str, runs: int) -> None:
    async with FileWorld(directory) as world, Engine(world=world, workflows=[chain]) as engine:
        print("ready", flush=True)

        async def one(i: int) -> None:
            handle: Run
            try:
                handle = await engine.start(chain, i, run_id=run_id(i))
            except EntityConflictError:
                handle = await engine.get_run(run_id(i))
            result = await handle.result(timeout=300)
            if result != expected(i):
                print(f"wrong {run_id(i)} {result}", flush=True)

        await asyncio.gather(*(one(i) for i in range(runs)))
        print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
