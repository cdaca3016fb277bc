"""The committed JS clients (``package.json`` + ``package-lock.json`` here), installed with
``npm ci`` when missing or older than the lockfile (the Makefile does the same before tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
NPM_TIMEOUT = 600


def ensure_node_modules() -> Path:
    """``tests/http/node_modules``, installed from the lockfile if it is not up to date."""
    marker = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the HTTP client tests need node and npm on PATH (Node >= 18)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            check=True,
            timeout=NPM_TIMEOUT,
            env={**os.environ, "npm_config_update_notifier": "false"},
        )
    return HERE / "node_modules"


def node() -> str:
    """The ``node`` executable."""
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("the HTTP client tests need node on PATH (Node >= 18)")
    return found
