"""W5 recovery: SIGKILL an engine half-way through 200 slow chains, restart it, count.

The parent (``w5_recovery``) spawns ``python -m benchmarks._recovery`` on a fresh durable
world, notes every run whose ``start()`` was acknowledged, kills the child with SIGKILL once
half of all step executions are in the ledger, starts it again and times how long until every
run completes (split into interpreter start-up and imports, opening the world, and driving the
runs to the end). Then it reads the world's logs and the ledger:

* lost runs (acknowledged, never completed) and wrong results: must be 0;
* steps recorded twice (two ``step_completed`` for one step id): must be 0;
* steps re-executed (two ledger lines for one step): allowed at-least-once, but bounded by
  what was in flight at the kill, at most one step per unfinished chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import _flows
from benchmarks._audit import audit_runs
from benchmarks._measure import Outcome
from benchmarks._process import Child, emit
from benchmarks._worlds import Cell, opened

__all__ = ["w5_recovery"]

_MODULE = "benchmarks._recovery"
_POLL = 0.005


def _run_ids(key: str, runs: int) -> list[str]:
    return [f"w5-{key}-{i}" for i in range(runs)]


def _ledger_counts(ledger: Path) -> Counter[tuple[str, str]]:
    """How many times each (run key, step index) ran, from the ledger lines."""
    counts: Counter[tuple[str, str]] = Counter()
    if ledger.exists():
        text = ledger.read_text()
        # The child may be mid-write while we poll: only whole lines (newline-terminated) count.
        for line in text[: text.rfind("\n") + 1].splitlines():
            key, index, _step_id = line.split()
            counts[key, index] += 1
    return counts


async def w5_recovery(cell: Cell) -> Outcome:
    """Run W5 on ``cell.world`` (a durable world) and return its figures and checks."""
    sizes = cell.sizes
    outcome, key = Outcome(), uuid.uuid4().hex[:10]
    directory = cell.scratch / f"w5-{key}"
    directory.mkdir()
    ledger = directory / "ledger.txt"
    total = sizes.w5_runs * sizes.w5_steps
    url = cell.fresh_url()
    args = [
        f"--url={url}",
        f"--ledger={ledger}",
        f"--key={key}",
        f"--runs={sizes.w5_runs}",
        f"--steps={sizes.w5_steps}",
        f"--pause={sizes.w5_step_sleep}",
    ]

    # The first engine: every start() it acknowledges is a run that must not be lost.
    acked: set[str] = set()
    first = await Child.spawn(_MODULE, *args, log=directory / "first.log")

    async def read_acks() -> None:
        with contextlib.suppress(RuntimeError):  # the pipe ends with the kill
            while True:
                acked.add((await first.message())["started"])

    reader = asyncio.create_task(read_acks())
    try:
        while sum(_ledger_counts(ledger).values()) < sizes.w5_kill_at * total:
            if first.exited:
                raise RuntimeError("the first engine exited before it could be killed")
            await asyncio.sleep(_POLL)
        first.kill()
    finally:
        await first.aclose()
        await reader
    at_kill = _ledger_counts(ledger)
    per_run = Counter(run_key for run_key, _index in at_kill)
    unfinished = sum(1 for i in range(sizes.w5_runs) if per_run[f"{key}-{i}"] < sizes.w5_steps)

    restarted_at = time.time()
    second = await Child.spawn(_MODULE, *args, "--restart", log=directory / "second.log")
    try:
        report = await second.message()
    finally:
        await second.aclose()

    counts = _ledger_counts(ledger)
    reexecuted = sum(n - 1 for n in counts.values() if n > 1)
    outcome.figures = {
        "recovery_s": report["done_at"] - restarted_at,
        "restart_startup_s": report["main_at"] - restarted_at,
        "restart_open_s": report["opened_at"] - report["main_at"],
        "restart_drive_s": report["done_at"] - report["opened_at"],
        "killed_at_pct": 100 * sum(at_kill.values()) / total,
        "in_flight_at_kill": unfinished,
        "steps_reexecuted": reexecuted,
    }
    results: dict[str, int | None] = report["results"]
    lost = sorted(rid for rid in acked if results.get(rid) is None)
    outcome.check("0 lost", not lost, f"{len(lost)} acknowledged runs unfinished: {lost[:5]}")
    wrong = {rid: r for rid, r in results.items() if r is not None and r != sizes.w5_steps}
    outcome.check("results right", not wrong, f"{len(wrong)} wrong: {list(wrong.items())[:5]}")
    outcome.check(
        "the kill interrupted work", unfinished > 0, "every chain had finished at the kill"
    )
    outcome.check(
        "re-executions bounded by what was in flight",
        reexecuted <= unfinished,
        f"{reexecuted} steps ran twice, only {unfinished} chains were unfinished at the kill",
    )
    missing = [
        f"{key}-{i}/{index}"
        for i, run_id in enumerate(_run_ids(key, sizes.w5_runs))
        if run_id in results
        for index in range(sizes.w5_steps)
        if (f"{key}-{i}", str(index)) not in counts
    ]
    outcome.check("every step in the ledger", not missing, f"never ran: {missing[:5]}")
    async with opened(url) as world:
        await audit_runs(outcome, world, sorted(results), sizes.w5_steps)
    return outcome


# -- the child -------------------------------------------------------------------------------


async def _child(args: argparse.Namespace, main_at: float) -> None:
    from worldflow import Engine, RunNotFoundError, open_world

    run_ids = _run_ids(args.key, args.runs)
    world = await open_world(args.url)
    opened_at = time.time()
    try:
        async with Engine(world=world, workflows=[_flows.ledger_chain]) as engine:
            if not args.restart:

                async def start(i: int, run_id: str) -> None:
                    await engine.start(
                        _flows.ledger_chain,
                        f"{args.key}-{i}",
                        args.steps,
                        args.ledger,
                        args.pause,
                        run_id=run_id,
                    )
                    emit(started=run_id)

                await asyncio.gather(*(start(i, run_id) for i, run_id in enumerate(run_ids)))

            async def result(run_id: str) -> tuple[str, Any] | None:
                try:
                    run = await engine.get_run(run_id)
                except RunNotFoundError:
                    return None  # killed before its start() reached the world
                try:
                    return run_id, await run.result(timeout=args.timeout)
                except TimeoutError:
                    return run_id, None

            results = await asyncio.gather(*(result(run_id) for run_id in run_ids))
            done_at = time.time()
    finally:
        await world.aclose()
    emit(
        main_at=main_at,
        opened_at=opened_at,
        done_at=done_at,
        results=dict(pair for pair in results if pair is not None),
    )


def main(argv: list[str] | None = None) -> None:
    """The child: start the runs (or, with ``--restart``, recover them) and wait for all."""
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    parser.add_argument("--url", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--pause", type=float, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--restart", action="store_true")
    main_at = time.time()
    asyncio.run(_child(parser.parse_args(argv), main_at))


if __name__ == "__main__":
    main(sys.argv[1:])
