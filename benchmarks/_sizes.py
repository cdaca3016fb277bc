"""How big each workload is: the issue's sizes, and the small ones of ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    """Workload sizes. The defaults are the issue's definitions; do not shrink them."""

    repeats: int = 3
    """W1-W4 (and their floors) run this many times on a fresh world; the median is kept."""
    w1_runs: int = 1000
    w1_steps: int = 3
    w1_in_flight: int = 100
    w2_runs: int = 200
    w3_runs: int = 200
    w4_width: int = 500
    w5_runs: int = 200
    w5_steps: int = 10
    w5_step_sleep: float = 0.020
    w5_kill_at: float = 0.5
    """Fraction of all step executions (ledger lines) after which the child is killed."""
    w6_events: tuple[int, ...] = (10, 100, 1000, 10_000)
    w7_runs: int = 10_000
    w8_runs: int = 5000
    w8_cached: int = 1000
    """W8's ``max_cached_runs``: fewer than the runs waiting on timers at once."""
    w8_sleep: float = 1.0
    timeout: float = 900.0
    """Seconds one workload may take on one world before it counts as hung."""


FULL = Sizes()
QUICK = Sizes(
    repeats=1,
    w1_runs=100,
    w2_runs=20,
    w3_runs=20,
    w4_width=50,
    w5_runs=20,
    w6_events=(10, 100),
    w7_runs=200,
    w8_runs=300,
    w8_cached=50,
    timeout=60.0,
)
"""Small enough for CI: checks correctness, and its times mean little."""
