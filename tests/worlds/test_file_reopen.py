"""File world: what the state machine's reopen rule found (#18), as fixed examples.

A crash is a copy of the world's directory taken while it is open (every acknowledged
write is synced, nothing else is done), opened again. Each test failed before its fix:

* a purge of a run written in the journal's current generation, then a crash: the journal
  replayed a write to the purged log and the world refused to open (``CorruptLogError``);
* a run purged and started again under the same id, with a log of the purged one's size,
  then a crash: it took the purged run's index entry (the runs' order changed);
* a hook and a wait with the same id in one run: the world-wide order of waits changed at
  reopen (they shared one creation key).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from worldflow.worlds import (
    FileWorld,
    HookCreated,
    RunCompleted,
    RunCreated,
    WaitCreated,
)
from worldflow.worlds.testing._base import payload

pytestmark = pytest.mark.anyio


def _crash_copy(root: Path, into: Path) -> Path:
    """The directory as a crash at this instant leaves it (the world is still open)."""
    shutil.copytree(root, into, symlinks=True)
    (into / "LOCK").unlink(missing_ok=True)
    return into


def _created(run_id: str) -> list[RunCreated]:
    return [RunCreated(run_id=run_id, workflow_name="wf", input=payload(1))]


async def test_a_crash_after_a_purge_reopens(tmp_path: Path) -> None:
    root = tmp_path / "w"
    async with FileWorld(root, fsync=True) as world:
        await world.append("run-a", _created("run-a"))
        await world.append("run-b", _created("run-b"))
    async with FileWorld(root, fsync=True) as world:  # run-a's first bytes are checkpointed
        await world.append("run-a", [RunCompleted(run_id="run-a", output=payload(2))])
        await world.purge("run-a")
        copy = _crash_copy(root, tmp_path / "crashed")
    async with FileWorld(copy) as reopened:
        assert [r.run_id for r in (await reopened.list_runs(order="asc")).items] == ["run-b"]


async def test_a_run_started_again_after_a_purge_keeps_its_place_after_a_crash(
    tmp_path: Path,
) -> None:
    root = tmp_path / "w"
    async with FileWorld(root, fsync=True) as world:
        await world.append("run-a", _created("run-a"))
        await world.append("run-b", _created("run-b"))
    async with FileWorld(root, fsync=True) as world:  # the index holds run-a's first log
        await world.append("run-a", [RunCompleted(run_id="run-a", output=payload(2))])
        await world.purge("run-a")
        await world.append("run-a", _created("run-a"))  # a log of the same size again
        copy = _crash_copy(root, tmp_path / "crashed")
    async with FileWorld(copy) as reopened:
        runs = [r.run_id for r in (await reopened.list_runs(order="asc")).items]
        assert runs == ["run-b", "run-a"]


async def test_a_hook_and_a_wait_of_one_id_keep_the_order_of_waits(tmp_path: Path) -> None:
    root = tmp_path / "w"
    async with FileWorld(root, fsync=True) as world:
        await world.append("run-a", _created("run-a"))
        await world.append("run-b", _created("run-b"))
        wait_a = WaitCreated(run_id="run-a", correlation_id="c1", event_name="go")
        await world.append("run-a", [wait_a])
        await world.append("run-b", [WaitCreated(run_id="run-b", correlation_id="c1")])
        await world.append("run-a", [HookCreated(run_id="run-a", correlation_id="c1", token="t")])
        before = [(w.run_id, w.wait_id) for w in (await world.list_waits()).items]
    assert before == [("run-a", "c1"), ("run-b", "c1")]
    async with FileWorld(root) as reopened:
        after = [(w.run_id, w.wait_id) for w in (await reopened.list_waits()).items]
        assert after == before
