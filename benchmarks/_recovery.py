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

On a world several processes share (PostgreSQL) it runs **three** engines instead, each
starting a third of the runs, and kills one: the other two take its runs over once its
heartbeat lapses (``ttl``) and a sweep finds them. It then times the kill to the last run
done and sets it beside ``ttl`` + one sweep + the work left at the kill (at the pace before
it): ``recovery over bound`` must stay at or under 1.
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

import msgspec

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
    if cell.world.shared:
        return await _w5_three_engines(cell)
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


_ENGINES = 3
_TTL = 2.0  # seconds: the engines' heartbeat TTL (they heartbeat and sweep every ttl / 3)


async def _w5_three_engines(cell: Cell) -> Outcome:
    """W5 on a shared world: three engines, one killed, the other two finish its runs."""
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
        f"--ttl={_TTL}",
        f"--of={_ENGINES}",
    ]
    acked: set[str] = set()
    started = [asyncio.Event() for _ in range(_ENGINES)]
    engines = [
        await Child.spawn(
            _MODULE, *args, f"--share={k}", stdin=True, log=directory / f"engine{k}.log"
        )
        for k in range(_ENGINES)
    ]
    began = 0.0

    async def read_acks(k: int) -> None:
        nonlocal began
        with contextlib.suppress(RuntimeError):  # the victim's pipe ends with the kill
            while not started[k].is_set():
                message = await engines[k].message()
                if "started" in message:
                    began = began or time.time()
                    acked.add(message["started"])
                else:
                    started[k].set()

    readers = [asyncio.create_task(read_acks(k)) for k in range(_ENGINES)]
    victim, survivors = engines[0], engines[1:]
    try:
        while sum(_ledger_counts(ledger).values()) < sizes.w5_kill_at * total:
            if any(child.exited for child in engines):
                raise RuntimeError("an engine exited before the kill")
            await asyncio.sleep(_POLL)
        victim.kill()
        killed_at = time.time()
        at_kill = _ledger_counts(ledger)
        await victim.aclose()
        await asyncio.gather(*(started[k].wait() for k in range(1, _ENGINES)))
        waited = msgspec.json.encode(sorted(acked)).decode()
        for child in survivors:
            await child.send(waited)
        reports = [await child.message() for child in survivors]
    finally:
        for child in engines:
            await child.aclose()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    per_run = Counter(run_key for run_key, _index in at_kill)
    done_steps = [per_run[f"{key}-{i}"] for i in range(sizes.w5_runs)]
    unfinished = sum(1 for n in done_steps if n < sizes.w5_steps)
    victims = [n for i, n in enumerate(done_steps) if i % _ENGINES == 0]
    step_s = (killed_at - began) / max(1, max(done_steps))  # the pace before the kill
    remaining_s = (sizes.w5_steps - min(victims)) * step_s
    bound_s = _TTL + _TTL / 3 + remaining_s
    recovery_s = max(report["done_at"] for report in reports) - killed_at
    counts = _ledger_counts(ledger)
    reexecuted = sum(n - 1 for n in counts.values() if n > 1)
    outcome.figures = {
        "recovery_s": recovery_s,
        "recovery_bound_s": bound_s,
        "recovery_over_bound": recovery_s / bound_s,
        "engines": float(_ENGINES),
        "ttl_s": _TTL,
        "killed_at_pct": 100 * sum(at_kill.values()) / total,
        "in_flight_at_kill": unfinished,
        "killed_engines_unfinished": sum(1 for n in victims if n < sizes.w5_steps),
        "steps_reexecuted": reexecuted,
    }
    results: dict[str, int | None] = {}
    for report in reports:
        for run_id, value in report["results"].items():
            if results.get(run_id) is None:
                results[run_id] = value
    lost = sorted(rid for rid in acked if results.get(rid) is None)
    outcome.check("0 lost", not lost, f"{len(lost)} acknowledged runs unfinished: {lost[:5]}")
    wrong = {rid: r for rid, r in results.items() if r is not None and r != sizes.w5_steps}
    outcome.check("results right", not wrong, f"{len(wrong)} wrong: {list(wrong.items())[:5]}")
    outcome.check(
        "the kill interrupted the killed engine's work",
        outcome.figures["killed_engines_unfinished"] > 0,
        "every chain of the killed engine had finished at the kill",
    )
    outcome.check(
        "re-executions bounded by what was in flight",
        reexecuted <= unfinished,
        f"{reexecuted} steps ran twice, only {unfinished} chains were unfinished at the kill",
    )
    async with opened(url) as world:
        await audit_runs(outcome, world, sorted(acked), sizes.w5_steps)
    return outcome


# -- the child -------------------------------------------------------------------------------


async def _child(args: argparse.Namespace, main_at: float) -> None:
    from worldflow import Engine, RunNotFoundError, open_world

    run_ids = _run_ids(args.key, args.runs)
    mine = [(i, run_id) for i, run_id in enumerate(run_ids) if i % args.of == args.share]
    world = await open_world(args.url)
    opened_at = time.time()
    ttl: Any = ... if args.ttl is None else args.ttl  # ... : the engine's default
    try:
        async with Engine(world=world, workflows=[_flows.ledger_chain], ttl=ttl) as engine:
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

                await asyncio.gather(*(start(i, run_id) for i, run_id in mine))
            if args.of > 1:  # one of several engines: wait for the runs the parent names
                emit(started_all=args.share)
                line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                run_ids = msgspec.json.decode(line)

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
    parser.add_argument("--ttl", type=float, default=None, help="the engine's heartbeat TTL")
    parser.add_argument("--of", type=int, default=1, help="engines sharing the runs")
    parser.add_argument("--share", type=int, default=0, help="this engine's share (0..of-1)")
    main_at = time.time()
    asyncio.run(_child(parser.parse_args(argv), main_at))


if __name__ == "__main__":
    main(sys.argv[1:])
