"""Small measuring tools: percentiles, a peak-RSS sampler, a timer."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import TypeAlias

import psutil

__all__ = [
    "Figures",
    "Outcome",
    "PeakRss",
    "append_statements",
    "disk_syncs",
    "median_figures",
    "peak_rss_during",
    "percentile",
    "queries",
    "rss_mib",
    "stopwatch",
]

Figures: TypeAlias = dict[str, float]
"""A workload's measured figures on one world, by metric name (``"steps_per_s"``, ...)."""

_MIB = 1024 * 1024
_PROCESS = psutil.Process()


def rss_mib() -> float:
    """This process's resident set size now, in MiB."""
    return float(_PROCESS.memory_info().rss) / _MIB


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of ``samples`` (nearest rank; p50 of [1, 2, 3, 4] is 2)."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class PeakRss:
    """The highest RSS seen while sampling, and where it started from."""

    def __init__(self) -> None:
        self.start_mib = rss_mib()
        self.peak_mib = self.start_mib

    def sample(self) -> None:
        """Read the RSS once and keep it if it is a new peak."""
        self.peak_mib = max(self.peak_mib, rss_mib())

    @property
    def growth_mib(self) -> float:
        """How far the peak rose above the starting RSS."""
        return self.peak_mib - self.start_mib


@contextlib.asynccontextmanager
async def peak_rss_during(interval: float = 0.005) -> AsyncIterator[PeakRss]:
    """Sample the RSS every ``interval`` seconds on the running loop while the block runs.

    The sampler only runs when the loop gets round to it, which is often enough: memory
    grows with the work the loop does, not behind its back.
    """
    peak = PeakRss()

    async def sample_forever() -> None:
        while True:
            peak.sample()
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample_forever())
    try:
        yield peak
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        peak.sample()


class stopwatch:
    """Wall time of a block, from ``time.perf_counter``: ``with stopwatch() as sw: ...``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started


class Outcome:
    """What one workload produced on one world or floor: figures, checks and notes."""

    def __init__(self) -> None:
        self.figures: Figures = {}
        self.checks: list[tuple[str, bool, str]] = []
        self.notes: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record a correctness check (``detail`` says what was wrong); returns ``ok``."""
        self.checks.append((name, ok, detail))
        return ok

    def check_equal(self, name: str, got: object, expected: object) -> bool:
        """Record that ``got == expected``, showing both when not."""
        ok = got == expected
        return self.check(name, ok, "" if ok else f"got {got!r}, expected {expected!r}")


def median_figures(samples: Sequence[Figures]) -> Figures:
    """Per metric, the median over repeats (the lower middle one for an even count)."""
    keys = {key for sample in samples for key in sample}
    merged: Figures = {}
    for key in sorted(keys):
        values = sorted(sample[key] for sample in samples if key in sample)
        merged[key] = values[(len(values) - 1) // 2]
    return merged


def disk_syncs(world: object) -> int | None:
    """How many syncs the world's writer has made so far, if it counts them (the file world's
    ``writer_stats``); ``None`` for worlds that do not say."""
    stats = getattr(world, "writer_stats", None)
    syncs = getattr(stats, "syncs", None)
    return syncs if isinstance(syncs, int) else None


def append_statements(world: object) -> int | None:
    """How many append statements the world has sent to its database so far, if it counts
    them (the PostgreSQL world's ``append_stats``); ``None`` for worlds that do not say.
    A count, so load on the machine does not change it."""
    stats = getattr(world, "append_stats", None)
    count = getattr(stats, "statements", None)
    return count if isinstance(count, int) else None


def queries(world: object) -> int | None:
    """How many round trips of any kind (appends, reads, queue, notifications) the world has
    made so far, if it counts them: statements sent to its database (the PostgreSQL world's
    ``queries``) or HTTP requests sent to its server (the remote world's ``requests``);
    ``None`` for worlds that do not say. A count, so load does not change it."""
    for name in ("queries", "requests"):
        count = getattr(world, name, None)
        if isinstance(count, int):
            return count
    return None
