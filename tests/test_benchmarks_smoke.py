"""The benchmark suite's quick run on the memory world, in-process: a broken benchmark (or an
engine change that breaks one) fails ``make test``, not only ``make bench-quick``.

Only correctness is asserted (results right, 0 lost, 0 recorded twice); never a time.
"""

from __future__ import annotations

import pytest

from benchmarks._report import Report, render_table
from benchmarks._suite import ALL_WORKLOADS, Options, run_suite
from benchmarks._workloads import WORKLOADS

pytestmark = pytest.mark.anyio


async def test_quick_suite_on_memory_is_correct() -> None:
    report: Report = await run_suite(Options(quick=True, worlds=("memory",)))

    failed = [f"{c.workload} {c.source}: {c.name}: {c.detail}" for c in report.failed_checks]
    assert failed == []
    assert report.worlds == ["memory"]
    measured = {f.workload for f in report.figures if f.kind == "world"}
    expected = {w for w in ALL_WORKLOADS if not WORKLOADS[w].durable_only}
    assert measured == expected
    floors = {(f.workload, f.source) for f in report.figures if f.kind == "floor"}
    assert {("W1", "plain"), ("W1", "fsync"), ("W4", "jsonl")} <= floors
    assert any(c.name == "0 recorded twice" and c.ok for c in report.checks)
    assert "memory" in render_table(report)
