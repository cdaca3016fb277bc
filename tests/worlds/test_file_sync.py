"""The file world's durability promise, seen from the system calls: an append that returned
(with ``fsync=True``) had its journal bytes synced first. A lost sync leaves every other test
green (the bytes are in the page cache, where every read finds them); only a power cut would
show it, so this test watches the writes and the syncs instead."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from worldflow.worlds import (
    FileWorld,
    RunCreated,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepStarted,
)
from worldflow.worlds._file import writer as writer_module
from worldflow.worlds.testing._base import payload

pytestmark = pytest.mark.anyio


class SyncWatch:
    """The files written with ``pwrite`` (the journal's writes) and not synced since."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.unsynced: set[int] = set()
        self.writes = 0

    def wrote(self, fd: int) -> None:
        with self.lock:
            self.unsynced.add(fd)
            self.writes += 1

    def synced(self, fd: int) -> None:
        with self.lock:
            self.unsynced.discard(fd)

    def pending(self) -> set[int]:
        with self.lock:
            return set(self.unsynced)


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> SyncWatch:
    seen = SyncWatch()
    real_pwrite = writer_module._pwrite_all
    real_fsync = os.fsync
    real_fdatasync = getattr(os, "fdatasync", os.fsync)

    def pwrite_all(fd: int, data: bytes, offset: int) -> None:
        real_pwrite(fd, data, offset)
        seen.wrote(fd)

    def fsync(fd: int) -> None:
        real_fsync(fd)
        seen.synced(fd)

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        seen.synced(fd)

    monkeypatch.setattr(writer_module, "_pwrite_all", pwrite_all)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync, raising=False)
    return seen


async def test_every_acknowledged_append_was_synced_before_it_returned(
    tmp_path: Path, watch: SyncWatch
) -> None:
    async with FileWorld(tmp_path / "world", fsync=True) as world:
        for n in range(20):
            run_id = f"run-{n}"
            await world.append(
                run_id,
                [
                    RunCreated(run_id=run_id, workflow_name="wf", input=payload(n)),
                    RunStarted(run_id=run_id),
                ],
            )
            assert watch.pending() == set(), f"append #{n} (creation) returned before its sync"
            writes = watch.writes
            await world.append(
                run_id,
                [
                    StepCreated(
                        run_id=run_id, correlation_id="step_1", step_name="s", input=payload(1)
                    ),
                    StepStarted(run_id=run_id, correlation_id="step_1"),
                ],
            )
            assert watch.writes > writes  # the append went through the journal
            assert watch.pending() == set(), f"append #{n} (step) returned before its sync"
            await world.append(
                run_id, [StepCompleted(run_id=run_id, correlation_id="step_1", result=payload(n))]
            )
            assert watch.pending() == set(), f"append #{n} (result) returned before its sync"
