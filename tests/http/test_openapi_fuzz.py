"""Fuzz every JSON route from ``/openapi.json`` with schemathesis against a live
``worldflow serve``: no input gives a 5xx, and every response matches its documented status,
content type and schema. The example budget is fixed so the run stays short
(``--slow`` raises it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Err

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 8


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    args = [sys.executable, "-m", "worldflow", "--world", "memory://", "serve", "--port", "0"]
    args += ["--token", TOKEN, "--workflows", "tests.http.dapr_workflows:DAPR_WORKFLOWS"]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith(b"worldflow serving on "), line
        yield line.split()[3].decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert b"error id" not in err, err.decode()  # no 500 was logged


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(live_url + "/openapi.json", headers=AUTH)


def test_no_input_breaks_the_api(api_schema: schemathesis.BaseSchema) -> None:
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"an operation the document cannot describe: {result.err()}")
            continue
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # Every check but "valid data is accepted": a request the schema allows may still be
            # refused with a documented 400 (a seed-form instance id in the path is checked
            # like daprd checks one, and the path cannot say which form a request is in).
            case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group
            failures.append(f"{operation.label}: {exc}")
    assert operations > 40  # every family's routes are in the document
    assert not failures, "\n\n".join(failures)
