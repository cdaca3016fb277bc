"""The HTTP benchmark runs and checks its answers (a few requests; no time is asserted)."""

from __future__ import annotations

import pytest

from benchmarks.http import main


def test_the_http_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--requests", "5", "--concurrency", "2", "--world", "memory,file"]) == 0
    table = capsys.readouterr().out
    for world in ("memory", "file"):
        for op in ("start", "get"):
            assert any(line.split()[:2] == [world, op] for line in table.splitlines())
