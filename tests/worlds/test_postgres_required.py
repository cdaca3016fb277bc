"""The PostgreSQL tests are part of ``make test``: without a server they fail, naming what to
set, and are skipped only when ``WORLDFLOW_SKIP_POSTGRES`` asks for it.

Each case runs one PostgreSQL test in a child pytest pointed at a port where nothing listens
(this test needs no server itself, so it runs everywhere, skipping asked for or not).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.worlds import postgres_db

ROOT = Path(__file__).resolve().parents[2]
_ONE_TEST = "tests/worlds/test_postgres_world.py::test_payloads_come_back_byte_for_byte"
_NOBODY = "postgresql://postgres@127.0.0.1:1/postgres"  # port 1: refused at once


def run_one(**env: str) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if k != postgres_db.SKIP_ENV}
    child.update({postgres_db.ADMIN_ENV: _NOBODY, **env})
    return subprocess.run(
        [sys.executable, "-m", "pytest", _ONE_TEST, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_server_the_postgres_tests_fail_naming_the_variables() -> None:
    done = run_one()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed" in out or "1 error" in out, out
    assert "skipped" not in out, out
    assert postgres_db.ADMIN_ENV in out, out
    assert f"{postgres_db.SKIP_ENV}=1" in out, out


def test_asked_to_skip_the_postgres_tests_skip() -> None:
    done = run_one(**{postgres_db.SKIP_ENV: "1"})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "1 skipped" in out, out
    assert postgres_db.SKIP_ENV in out, out  # the reason names it (-ra)
