"""New run logs are spare files linked into place (``worlds/_file/spares.py``): a new run's
first append creates no file on the hot path, a closed world leaves no spare behind, what a
killed writer left in ``spares/`` is debris that never becomes a run, and a rename a power
cut undid is made good by the journal. A spare never replaces a file that exists."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.worlds.test_file_world import crashing_writer, new_run, start_step
from worldflow.worlds import FileWorld
from worldflow.worlds._file.spares import SPARES_DIR, Spares

pytestmark = pytest.mark.anyio


async def _spares_ready(world: FileWorld, count: int) -> None:
    """Wait (briefly) until the pool holds ``count`` spares."""
    spares = world.path / SPARES_DIR
    for _ in range(500):
        if spares.exists() and len(list(spares.iterdir())) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pool of spare files was not filled")


async def test_new_run_logs_are_spares_linked_into_place(tmp_path: Path) -> None:
    async with FileWorld(tmp_path / "w") as world:
        await _spares_ready(world, 8)
        spares = {p.stat().st_ino for p in (world.path / SPARES_DIR).iterdir()}
        for i in range(5):
            await new_run(world, f"r{i}")
            await start_step(world, f"r{i}")
        stats = world.writer_stats
        assert stats is not None
        assert stats.spares == 5  # one per new log; a log's later appends open nothing
        logs = sorted((world.path / "runs").iterdir())
        assert {p.stat().st_ino for p in logs} <= spares  # the logs are those files
    assert len(logs) == 5
    assert list((tmp_path / "w" / SPARES_DIR).iterdir()) == []  # closing removes the spares
    async with FileWorld(tmp_path / "w") as world:
        for i in range(5):
            assert [e.type for e in (await world.list_events(f"r{i}")).items] == [
                "run_created",
                "step_created",
                "step_started",
            ]


async def test_a_killed_writers_spares_are_debris_and_never_runs(tmp_path: Path) -> None:
    root = tmp_path / "w"
    await crashing_writer(
        root,
        """
        await world.append("r0", created("r0"))
        for _ in range(500):
            if len(os.listdir(os.path.join(world.path, "spares"))) >= 8:
                break
            await asyncio.sleep(0.01)
        """,
    )
    left = list((root / SPARES_DIR).iterdir())
    assert len(left) >= 8  # killed: nothing removed them
    left[0].write_bytes(b'{"type":"run_created"}\n')  # a spare whose rename a power cut undid
    async with FileWorld(root) as world:
        assert [r.run_id for r in (await world.list_runs()).items] == ["r0"]
        for _ in range(500):
            if not any(p.exists() for p in left):
                break
            await asyncio.sleep(0.01)
        assert not any(p.exists() for p in left)  # removed by the new writer's pool
        await new_run(world, "r1")
    async with FileWorld(root) as world:
        assert sorted(r.run_id for r in (await world.list_runs()).items) == ["r0", "r1"]


async def test_the_journal_restores_a_log_whose_link_a_power_cut_undid(tmp_path: Path) -> None:
    root = tmp_path / "w"
    await crashing_writer(
        root,
        """
        for i in range(3):
            await world.append(f"r{i}", created(f"r{i}"))
            await world.append(f"r{i}", step(f"r{i}", "s"))
        """,
    )
    logs = sorted((root / "runs").iterdir())
    assert len(logs) == 3
    for log in logs:  # the new logs' directory entries were not synced yet: gone
        log.unlink()
    async with FileWorld(root) as world:
        for i in range(3):
            events = (await world.list_events(f"r{i}")).items
            assert [e.type for e in events] == ["run_created", "step_created"]


def test_a_spare_never_replaces_a_file_that_exists(tmp_path: Path) -> None:
    spares = Spares(tmp_path, size=2)
    spares.start()
    try:
        for _ in range(500):
            if (tmp_path / SPARES_DIR).exists() and len(
                list((tmp_path / SPARES_DIR).iterdir())
            ) == 2:
                break
            time.sleep(0.01)
        target = tmp_path / "log.jsonl"
        target.write_bytes(b"kept\n")
        assert spares.take(target) is None  # the file is there: no spare for it
        assert target.read_bytes() == b"kept\n"
        fd = spares.take(tmp_path / "other.jsonl")  # the spare it refused is still there
        assert fd is not None
        os.write(fd, b"new\n")
        os.close(fd)
        assert (tmp_path / "other.jsonl").read_bytes() == b"new\n"
    finally:
        spares.close()
    assert list((tmp_path / SPARES_DIR).iterdir()) == []  # the linked name went too
    assert (tmp_path / "other.jsonl").read_bytes() == b"new\n"
