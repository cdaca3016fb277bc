"""A run whose log is damaged is listed with a visible ``corrupt`` mark (issue #10, "One
damaged run blocks every run"): in ``worldflow runs`` and in the inspector's runs list, with
the other runs as they are. ``RunInfo.corrupt`` had it, but neither listing showed it (found
by truncating a log and listing the world from the shell: the run read ``running``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from tests.inspector.conftest import client_for
from tests.worlds.test_file_damage import _two_runs
from worldflow import Engine
from worldflow._cli import main
from worldflow.inspector import ControlPlane, create_app
from worldflow.worlds import FileWorld

pytestmark = pytest.mark.anyio


async def _truncated(root: Path) -> None:
    log = await _two_runs(root)
    data = log.read_bytes()
    log.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # its last line lost


async def test_worldflow_runs_marks_a_damaged_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "w"
    await _truncated(root)
    assert await asyncio.to_thread(main, ["--world", f"file://{root}", "runs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "corrupt" in lines["bad"]
    assert "corrupt" not in lines["good"]


async def test_the_inspector_runs_list_marks_a_damaged_run(tmp_path: Path) -> None:
    root = tmp_path / "w"
    await _truncated(root)
    async with FileWorld(root) as world, Engine(world, []) as engine:
        client = await client_for(create_app(cast(ControlPlane, engine)))
        try:
            html = await (await client.get("/")).text()
        finally:
            await client.close()
    rows: dict[str, Any] = {
        run_id: html.split(f'id="run-{run_id}"', 1)[1].split("</tr>", 1)[0]
        for run_id in ("bad", "good")
    }
    assert ">corrupt<" in rows["bad"]
    assert "truncated" in rows["bad"]  # the title says what is wrong
    assert ">corrupt<" not in rows["good"]
