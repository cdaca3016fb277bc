"""An attempt's outcome that the world does not store at once is not an attempt lost to a
crash (issue #10, "A full disk" and "A restart uses up a step's retries"; found by filling a
tmpfs under ``worldflow serve``: steps failed with "lost 4 attempts to crashes" though no
process died, and their functions ran again at every try).

* On a full disk the outcome is stored once the disk has room: the function ran once, and
  the step's view counts no lost attempt.
* A result over the world's size limit fails the step, saying so, after one run of the
  function (it was run again and again until the lost-attempt limit).
* An engine entered on a full disk starts (it raised the catalog write's ``DiskFullError``):
  the refusal is logged, and the catalog is published once the disk has room.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import pytest

from tests.engine.runtime import WAIT
from worldflow import DiskFullError, Engine, WorkflowFailedError, step, workflow
from worldflow.worlds import FileWorld, MemoryWorld, StepStatus, World
from worldflow.worlds._file import writer as writer_module
from worldflow.worlds._file.log import write_atomically as real_write_atomically
from worldflow.worlds._validation import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.anyio

RAN: dict[str, int] = {}


@step(name="outcome.work", max_retries=0, max_lost_attempts=1)
def work(key: str, size: int) -> str:
    RAN[key] = RAN.get(key, 0) + 1
    return key + "x" * size


@workflow(name="outcome.flow")
async def flow(key: str, size: int = 0) -> int:
    return len(await work(key, size))


async def test_a_full_disk_delays_a_steps_outcome_and_does_not_run_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    RAN.clear()
    real = writer_module._write_all
    refused = [0]

    def write_all(fd: int, data: bytes) -> None:
        if b'"step_completed"' in data and refused[0] < 4:  # the disk is full for a while
            refused[0] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(writer_module, "_write_all", write_all)
    async with FileWorld(tmp_path / "w") as world, Engine(world, [flow]) as engine:
        run = await engine.start(flow, "a")
        async with asyncio.timeout(WAIT):
            while True:
                try:  # a waiter is woken with a refused write of its run: it may wait again
                    assert await run.result(timeout=WAIT) == 1
                    break
                except DiskFullError:
                    await asyncio.sleep(0.02)  # the engine tries again on a real clock
        [view] = (await world.list_steps(run.run_id)).items
    assert refused[0] == 4
    assert RAN == {"a": 1}, "the step ran again when its outcome could not be stored"
    assert (view.status, view.attempt, view.lost_attempts) == (StepStatus.COMPLETED, 1, 0)


@pytest.mark.parametrize("kind", ["memory", "file"])
async def test_a_result_over_the_worlds_limit_fails_the_step_once(
    tmp_path: Path, kind: str
) -> None:
    RAN.clear()
    world: World = MemoryWorld() if kind == "memory" else await FileWorld(tmp_path / "w").open()
    try:
        async with Engine(world, [flow]) as engine:
            run = await engine.start(flow, "b", MAX_PAYLOAD_BYTES)
            with pytest.raises(WorkflowFailedError, match="cannot store") as failed:
                await run.result(timeout=WAIT)
            assert "the limit is" in str(failed.value)
            assert "lost" not in str(failed.value)
            [view] = (await world.list_steps(run.run_id)).items
    finally:
        await world.aclose()
    assert RAN == {"b": 1}
    assert (view.status, view.lost_attempts) == (StepStatus.FAILED, 0)


async def test_an_engine_entered_on_a_full_disk_starts_and_publishes_its_catalog_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    RAN.clear()
    full = [True]

    def write_atomically(path: Path, data: bytes, *, fsync: bool) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_atomically(path, data, fsync=fsync)

    monkeypatch.setattr(f"{writer_module.__name__}.write_atomically", write_atomically)
    caplog.set_level(logging.WARNING, logger="worldflow.engine")
    async with FileWorld(tmp_path / "w") as world, Engine(world, [flow]) as engine:
        [warning] = [r for r in caplog.records if r.name == "worldflow.engine"]
        assert "catalog (outcome.flow) could not be stored" in warning.getMessage()
        assert "ENOSPC" in warning.getMessage()
        async with FileWorld(tmp_path / "w", read_only=True) as reader:
            assert await reader.list_workflows() == []  # nothing on disk yet
            full[0] = False  # space is freed
            async with asyncio.timeout(WAIT):
                while not await reader.list_workflows():  # noqa: ASYNC110 - reads the file
                    await asyncio.sleep(0.02)  # the engine tries again on a real clock
            [entry] = await reader.list_workflows()
            assert entry.name == "outcome.flow"
        run = await engine.start(flow, "c")
        assert await run.result(timeout=WAIT) == 1
