"""The floors: the same workload shapes as plain asyncio, with and without a JSONL ledger.

A floor is what the interpreter and the disk give for free, measured in the same process run
as the engine so that the ratios hold on a slower or faster machine:

* ``plain``: workflows are coroutines and steps are awaited coroutines; nothing is durable.
* ``jsonl``: the same, plus one JSON line appended (one ``write``) per step.
* ``fsync``: the same, plus an ``fsync`` after every line: the naive durable engine.
* ``fdatasync``: the best primitive a one-line-at-a-time durable engine has, the one the file
  world's own journal uses: the line is written in place into a preallocated, zeroed file and
  made durable with ``fdatasync`` (no size change, so no metadata to sync). The durable worlds
  are held against this floor, which the file world must beat by sharing syncs between
  concurrent appends (group commit).

Each floor returns its figures and its results, which the harness checks like the engine's.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Final

import msgspec

from benchmarks._measure import Figures, peak_rss_during, percentile, stopwatch

__all__ = [
    "DURABLE_FLOOR",
    "FLOORS",
    "Ledger",
    "floor_fanout",
    "floor_hook",
    "floor_latency",
    "floor_throughput",
]

FLOORS: Final = ("plain", "jsonl", "fsync", "fdatasync")
"""Floor names."""
DURABLE_FLOOR: Final = "fdatasync"
"""The floor durable worlds are held against: the cheapest durable primitive."""
_PREALLOCATE: Final = 1 << 20  # bytes zeroed ahead of the fdatasync floor's writes


class Ledger:
    """Where a floor's steps record their results: nowhere, a JSONL file, or one fsynced.

    The write is synchronous on purpose: it is the cost of one appended line with nothing
    shared between concurrent steps.
    """

    def __init__(self, floor: str, directory: Path) -> None:
        if floor not in FLOORS:
            raise ValueError(f"unknown floor {floor!r}: expected one of {', '.join(FLOORS)}")
        self._fsync = floor == "fsync"
        self._in_place = floor == "fdatasync"
        self._offset = 0
        self._capacity = 0
        self._fd = -1
        if floor != "plain":
            path = directory / f"floor-{floor}-{time.monotonic_ns()}.jsonl"
            flags = os.O_WRONLY | os.O_CREAT | (0 if self._in_place else os.O_APPEND)
            self._fd = os.open(path, flags, 0o644)
            if self._in_place:
                self._grow()

    def _grow(self) -> None:
        """Zero the next stretch of the file and make its size durable (outside any step's
        sync: the journal of the file world grows the same way, rarely)."""
        os.pwrite(self._fd, bytes(_PREALLOCATE), self._capacity)
        self._capacity += _PREALLOCATE
        os.fsync(self._fd)

    def append(self, run: int, step: int, result: int) -> None:
        """Record one step's result (a no-op for the ``plain`` floor)."""
        if self._fd < 0:
            return
        line = msgspec.json.encode({"run": run, "step": step, "result": result}) + b"\n"
        if self._in_place:
            if self._offset + len(line) > self._capacity:
                self._grow()
            os.pwrite(self._fd, line, self._offset)
            self._offset += len(line)
            os.fdatasync(self._fd)
            return
        os.write(self._fd, line)
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file, if any. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


async def floor_throughput(
    ledger: Ledger, *, runs: int, steps: int, in_flight: int
) -> tuple[Figures, list[int]]:
    """W1's shape: ``runs`` chains of ``steps`` steps (each returns input + 1), at most
    ``in_flight`` at a time. Run ``i`` starts from ``i``; returns each run's result."""

    async def step(run: int, index: int, x: int) -> int:
        ledger.append(run, index, x + 1)
        return x + 1

    async def chain(run: int) -> int:
        x = run
        for index in range(steps):
            x = await step(run, index, x)
        return x

    gate = asyncio.Semaphore(in_flight)

    async def one(run: int) -> int:
        async with gate:
            return await chain(run)

    async with peak_rss_during() as rss:
        with stopwatch() as sw:
            results = await asyncio.gather(*(one(i) for i in range(runs)))
    figures = {
        "runs_per_s": runs / sw.elapsed,
        "steps_per_s": runs * steps / sw.elapsed,
        "peak_rss_mib": rss.peak_mib,
    }
    return figures, results


async def floor_latency(ledger: Ledger, *, runs: int) -> tuple[Figures, list[int]]:
    """W2's shape: a one-step workflow started ``runs`` times in sequence; start → result."""

    async def step(run: int, x: int) -> int:
        ledger.append(run, 0, x + 1)
        return x + 1

    async def flow(run: int) -> int:
        return await step(run, run)

    latencies: list[float] = []
    results: list[int] = []
    for run in range(runs):
        with stopwatch() as sw:
            results.append(await asyncio.create_task(flow(run)))
        latencies.append(sw.elapsed)
    return latency_figures(latencies), results


async def floor_hook(ledger: Ledger, *, runs: int) -> tuple[Figures, list[int]]:
    """W3's shape: a workflow parked on a future; resume (record the payload) → result."""

    async def flow(hook: asyncio.Future[int]) -> int:
        return await hook + 1

    latencies: list[float] = []
    results: list[int] = []
    for run in range(runs):
        hook: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(flow(hook))
        await asyncio.sleep(0)  # the workflow parks on its hook before the resume is timed
        with stopwatch() as sw:
            ledger.append(run, 0, run)
            hook.set_result(run)
            results.append(await task)
        latencies.append(sw.elapsed)
    return latency_figures(latencies), results


async def floor_fanout(ledger: Ledger, *, width: int) -> tuple[Figures, int]:
    """W4's shape: one workflow gathers ``width`` steps (step ``i`` returns ``i``), sums them."""

    async def step(index: int) -> int:
        ledger.append(0, index, index)
        return index

    async def flow() -> int:
        return sum(await asyncio.gather(*(step(i) for i in range(width))))

    with stopwatch() as sw:
        total = await asyncio.create_task(flow())
    return {"wall_ms": sw.elapsed * 1000}, total


def latency_figures(latencies: list[float]) -> Figures:
    """p50 and p99 of latencies given in seconds, as ``p50_ms`` / ``p99_ms``."""
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }
