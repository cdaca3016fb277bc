"""Importing worldflow stays light: no web framework, template engine, database driver or
test tooling."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("aiohttp", "jinja2", "asyncpg", "pytest", "hypothesis")


@pytest.mark.parametrize("module", ["worldflow", "worldflow.worlds"])
def test_import_does_not_pull_in_optional_dependencies(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "", f"import {module} imported {done.stdout.strip()}"


def test_the_check_would_see_a_heavy_import() -> None:
    # The subprocess check above is only meaningful if these packages are importable here.
    code = f"import {', '.join(HEAVY)}; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "ok"
