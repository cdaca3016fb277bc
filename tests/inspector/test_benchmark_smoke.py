"""The inspector benchmark at small sizes: its pages render and hold what they should (no
time is asserted; ``python -m benchmarks.inspector`` measures)."""

from __future__ import annotations

import pytest

from benchmarks.inspector import measure

pytestmark = pytest.mark.anyio


async def test_inspector_benchmark_pages_render() -> None:
    rows = await measure("memory", 300, 300, 1)
    assert [r["page"] for r in rows] == [
        "runs list, page 1",
        "runs list, running",
        "run page, 300 events",
    ]
    assert all(r["html_bytes"] > 0 for r in rows)
