"""Crash test: a real engine on a file world, killed with SIGKILL at random moments.

Each round starts a worker process (``crash_worker``) on the same directory and kills it
after a random number of step attempts, so the kills land anywhere: in a step, between a
step and its record, in the middle of a group commit. A last worker runs everything to the
end. Then every run must have completed with the right result, and no step may have more
than one recorded result (``step_completed`` / ``step_failed``) in its log.

CI kills three times; ``--slow`` runs more runs and a dozen kills.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from asyncio.subprocess import PIPE, Process
from collections import Counter
from pathlib import Path

import pytest

from tests.worlds.crash_worker import CHAIN, expected, run_id
from worldflow import _serde
from worldflow.worlds import FileWorld, RunStatus

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_RUN = CHAIN + 2


async def spawn(directory: Path, runs: int) -> Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.worlds.crash_worker",
        str(directory),
        str(runs),
        cwd=REPO,
        stdout=PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def run_until(worker: Process, *, steps: int | None) -> tuple[int, bool]:
    """Read the worker's progress; SIGKILL it after ``steps`` step attempts (``None``: let
    it finish). Returns the attempts seen and whether it got to ``done``."""
    assert worker.stdout is not None
    seen = 0
    done = False
    async with asyncio.timeout(240):
        while line := await worker.stdout.readline():
            if line == b"step\n":
                seen += 1
                if steps is not None and seen >= steps:
                    worker.send_signal(signal.SIGKILL)
                    break
            elif line == b"done\n":
                done = True
            else:
                assert line == b"ready\n", line
        await worker.wait()
    return seen, done


async def test_kill_9_at_random_moments(tmp_path: Path, slow: bool) -> None:
    seed = int(os.environ.get("WORLDFLOW_SEED") or random.randrange(1 << 32))
    note = f"(seed {seed}; rerun with WORLDFLOW_SEED={seed})"
    try:
        await _kill_at_random_moments(tmp_path / "world", seed, slow, note)
    except BaseException as exc:  # every failure path names the seed (a timeout, a crash)
        exc.add_note(f"test_kill_9_at_random_moments {note}")
        raise


async def _kill_at_random_moments(directory: Path, seed: int, slow: bool, note: str) -> None:
    rng = random.Random(seed)
    runs, kills = (600, 12) if slow else (200, 3)
    interrupted = 0
    attempts = 0
    for _ in range(kills):
        budget = runs * STEPS_PER_RUN // (kills + 1)
        seen, done = await run_until(await spawn(directory, runs), steps=rng.randint(1, budget))
        attempts += seen
        if done:
            break
        async with FileWorld(directory, read_only=True) as reader:
            finished = len((await reader.list_runs(status=RunStatus.COMPLETED, limit=runs)).items)
        interrupted += finished < runs  # killed with work in flight, not after it all
    worker = await spawn(directory, runs)
    seen, done = await run_until(worker, steps=None)
    attempts += seen
    assert done, f"the last worker did not finish {note}"
    assert worker.returncode == 0, note
    assert interrupted, f"no kill landed while runs were in flight {note}"

    async with FileWorld(directory) as world:
        for i in range(runs):
            run = await world.get_run(run_id(i))
            assert run.status is RunStatus.COMPLETED, (run, note)
            assert _serde.decode(run.output) == expected(i), (run, note)
            events = (await world.list_events(run.run_id)).items
            results = Counter(
                e.correlation_id for e in events if e.type in ("step_completed", "step_failed")
            )
            assert len(results) == STEPS_PER_RUN, (run.run_id, results, note)
            twice = {step: n for step, n in results.items() if n > 1}
            assert not twice, f"{run.run_id}: step results recorded twice: {twice} {note}"
            assert not any(e.type == "step_failed" for e in events), (run.run_id, note)
    # execution is at-least-once: a kill may repeat attempts, but every step ran
    assert attempts >= runs * STEPS_PER_RUN, note
