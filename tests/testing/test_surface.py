"""worldflow.testing's public surface, its import cost, and its pytest plugin as users get it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import worldflow.testing

TESTING_ALL = [
    "DEFAULT_START",
    "Blocked",
    "Divergence",
    "ReplayDivergenceError",
    "ReplayResult",
    "VirtualClock",
    "export_history",
    "fetch_history",
    "load_history",
    "memory_engine",
    "override_step",
    "raise_event_when_waiting",
    "replay",
    "resume_hook_when_waiting",
    "skip_sleep",
    "wait_until_blocked",
    "write_history",
]


def test_the_public_names_are_pinned() -> None:
    assert sorted(worldflow.testing.__all__) == sorted(TESTING_ALL)
    for name in TESTING_ALL:
        assert getattr(worldflow.testing, name) is not None


def test_importing_it_does_not_import_pytest_or_hypothesis() -> None:
    code = (
        "import sys, worldflow.testing\n"
        "print(','.join(m for m in ('pytest', 'hypothesis') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def test_the_plugin_is_registered_for_pytest() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "worldflow"]
    assert [e.value for e in found] == ["worldflow.testing.pytest_plugin"]


def test_a_users_test_file_gets_the_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            from datetime import timedelta

            import pytest

            from worldflow import sleep, step, workflow
            from worldflow.testing import DEFAULT_START


            @step
            async def remind(user: str) -> str:
                return f"reminded {user}"


            @workflow
            async def reminder(user: str) -> str:
                await sleep("3d")
                return await remind(user)


            @pytest.mark.anyio
            async def test_reminder(worldflow_engine, worldflow_clock):
                run = await worldflow_engine.start(reminder, "ada")
                assert await run.result(timeout=7 * 86400) == "reminded ada"
                assert worldflow_clock.now() == DEFAULT_START + timedelta(days=3)


            @pytest.fixture
            def anyio_backend():
                return "asyncio"
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
