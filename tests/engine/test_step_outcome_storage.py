"""An attempt's outcome that the world does not store at once is not an attempt lost to a
crash (issue #10, "A full disk" and "A restart uses up a step's retries"; found by filling a
tmpfs under ``worldflow serve``: steps failed with "lost 4 attempts to crashes" though no
process died, and their functions ran again at every try).

* On a full disk the outcome is stored once the disk has room: the function ran once, and
  the step's view counts no lost attempt.
* A result over the world's size limit fails the step, saying so, after one run of the
  function (it was run again and again until the lost-attempt limit).
* While the outcome waits for room the step is still in flight: a drive of its run meanwhile
  (another step ends) does not start it again. The fused path (a result appended with the
  body's next decisions) forgot the job before its append, so when that append met the full
  disk the next drive relaunched the step and its function ran twice.
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


GATE: dict[str, asyncio.Event] = {}


@step(name="outcome.fast", max_retries=0, max_lost_attempts=3)
async def fast(key: str) -> str:
    RAN[key] = RAN.get(key, 0) + 1
    return f"{key}-result"


@step(name="outcome.later", max_retries=0)
async def later(key: str) -> str:
    RAN[key] = RAN.get(key, 0) + 1
    await GATE[key].wait()
    return f"{key}-result"


@workflow(name="outcome.pair")
async def pair(first: str, second: str) -> list[str]:
    return list(await asyncio.gather(fast(first), later(second)))


async def _until_a_step_completed(world: World, run_id: str) -> None:
    seen = 0
    while True:
        for event in (await world.list_events(run_id, after_seq=seen)).items:
            seen = event.seq
            if event.type == "step_completed":
                return
        try:
            await world.wait_for_run(run_id, after_seq=seen)
        except DiskFullError:  # at once while a refused write is the run's last news
            await asyncio.sleep(0.02)


async def test_a_step_waiting_out_a_full_disk_is_not_started_again_by_another_drive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fused path (the result appended with the body's next decisions) met the full disk:
    # the step's result waits for room, and meanwhile the run is driven again (its other
    # step ends). That drive must not take the waiting step for one that lost its attempt.
    RAN.clear()
    GATE["b"] = asyncio.Event()
    real = writer_module._write_all
    full = [True]
    refused = [0]
    loop = asyncio.get_running_loop()
    twice = asyncio.Event()  # the fused append, then the plain one, refused

    def write_all(fd: int, data: bytes) -> None:  # in the writer's thread
        if full[0] and b'"step_completed"' in data and b"a-result" in data:
            refused[0] += 1
            if refused[0] == 2:
                loop.call_soon_threadsafe(twice.set)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(writer_module, "_write_all", write_all)
    async with FileWorld(tmp_path / "w") as world, Engine(world, [pair]) as engine:
        run = await engine.start(pair, "a", "b")
        async with asyncio.timeout(WAIT):
            await twice.wait()
            GATE["b"].set()  # the other step ends: its result drives the run
            await _until_a_step_completed(world, run.run_id)  # b's (a's cannot be stored)
        await asyncio.sleep(0.5)  # what that drive started, if anything, runs now
        full[0] = False  # room again: the waiting result is stored
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    assert await run.result(timeout=WAIT) == ["a-result", "b-result"]
                    break
                except DiskFullError:
                    await asyncio.sleep(0.02)
        views = {s.step_name: s for s in (await world.list_steps(run.run_id)).items}
    assert RAN == {"a": 1, "b": 1}, "the waiting step ran again"
    view = views["outcome.fast"]
    assert (view.status, view.attempt, view.lost_attempts) == (StepStatus.COMPLETED, 1, 0)


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
