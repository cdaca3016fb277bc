"""A full disk (issue #10, "A full disk"): the failing append raises a clear ``WorldError``
naming ENOSPC, its waiters are woken with it, reads go on, writes are taken again once space
is free, nothing half-written stays behind, and ``aclose()`` always ends the writer thread and
releases the lock.

The first tests fill a real file system: a 2 MiB tmpfs mounted for the test (it needs root;
the CI runs as root). The last ones inject ENOSPC into the writer's writes, so every group
boundary and both worlds' logic run the same on any machine.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.engine.runtime import WAIT, running, wait_for_type
from worldflow import WorldError, create_hook, workflow
from worldflow.worlds import (
    EventRaised,
    FileWorld,
    RunCompleted,
    RunCreated,
    RunStarted,
    RunStatus,
    StepCompleted,
    StepCreated,
    StepStarted,
)
from worldflow.worlds._file import writer as writer_module

pytestmark = pytest.mark.anyio

_BIG = msgspec.Raw(b'"' + b"x" * 60_000 + b'"')


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted after the test."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # pragma: no cover - not root, or no CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory: Path) -> Path:
    """Write a ballast file until the file system is full; return it."""
    ballast = directory / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    return ballast


def _created(run_id: str) -> list[object]:
    return [
        RunCreated(run_id=run_id, workflow_name="wf", input=_BIG),
        RunStarted(run_id=run_id),
    ]


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("worldflow-file-writer")]


async def test_a_full_disk_refuses_the_write_and_the_world_goes_on(small_disk: Path) -> None:
    root = small_disk / "world"
    world = await FileWorld(root).open()
    try:
        await world.append("r1", _created("r1"))  # type: ignore[arg-type]
        ballast = _fill(small_disk)
        waiter = asyncio.ensure_future(world.wait_for_run("r1", after_seq=2))
        await asyncio.sleep(0)
        with pytest.raises(WorldError, match="ENOSPC") as refused:
            await world.append("r1", [EventRaised(run_id="r1", name="e", payload=_BIG)])
        assert "Free space" in str(refused.value)
        with pytest.raises(WorldError, match="ENOSPC"):  # the waiter is woken with it
            await asyncio.wait_for(waiter, WAIT)
        with pytest.raises(WorldError, match="ENOSPC"):  # a new run, a new file: refused too
            await world.append("r2", _created("r2"))  # type: ignore[arg-type]
        # reads go on, and show nothing of the refused writes
        assert (await world.get_run("r1")).last_seq == 2
        assert [r.run_id for r in (await world.list_runs()).items] == ["r1"]
        assert len((await world.list_events("r1")).items) == 2
        ballast.unlink()  # space again: writes are taken again
        done = await world.append("r1", [EventRaised(run_id="r1", name="e", payload=_BIG)])
        assert done.events[0].seq == 3
        await world.append("r2", _created("r2"))  # type: ignore[arg-type]
        _fill(small_disk)  # full again while closing: the index cannot be written
    finally:
        await world.aclose()
    assert _writer_threads() == []
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []
    (small_disk / "ballast").unlink()
    async with FileWorld(root) as reopened:  # the lock was released; the logs are whole
        runs = {r.run_id: r for r in (await reopened.list_runs()).items}
        assert {k: (v.last_seq, v.corrupt) for k, v in runs.items()} == {
            "r1": (3, None),
            "r2": (2, None),
        }


@workflow
async def parked(token: str) -> object:
    """Wait on the hook ``token``; return its payload."""
    return await create_hook(token=token)


async def test_result_waiters_are_woken_when_the_disk_is_full(small_disk: Path) -> None:
    root = small_disk / "world"
    async with FileWorld(root) as world, running(world, [parked]) as engine:
        run = await engine.start(parked, "tok", run_id="p")
        await wait_for_type(run, "hook_created")
        result = asyncio.ensure_future(run.result(timeout=WAIT))
        await asyncio.sleep(0)
        ballast = _fill(small_disk)
        with pytest.raises(WorldError, match="ENOSPC"):
            await engine.resume_hook("tok", "x" * 100_000)
        with pytest.raises(WorldError, match="ENOSPC"):
            await result
        ballast.unlink()
        await engine.resume_hook("tok", "done")
        assert await run.result(timeout=WAIT) == "done"


async def test_an_open_on_a_full_disk_works_and_leaves_no_temp_files(small_disk: Path) -> None:
    root = small_disk / "world"
    async with FileWorld(root) as world:
        for i in range(3):
            await world.append(f"r{i}", _created(f"r{i}"))  # type: ignore[arg-type]
    (root / "index.json").unlink()  # the open has to rebuild it, on a full disk
    (root / ".index.json.tmp").write_bytes(b"debris of an earlier full disk")
    ballast = _fill(small_disk)
    async with FileWorld(root) as world:
        assert len((await world.list_runs()).items) == 3
        assert not (root / ".index.json.tmp").exists()
    ballast.unlink()


# -- injected faults: deterministic, on any machine ------------------------------------------


@pytest.fixture
def full_after(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``budget[0]`` more writes succeed, then every write finds the disk full (the writer's
    writes only; ``budget[0] = -1`` lets everything through)."""
    budget = [-1]
    real = writer_module._write_all

    def write_all(fd: int, data: bytes) -> None:
        if budget[0] == 0:
            os.write(fd, data[: len(data) // 2])  # what a filling disk does: part of it
            raise OSError(errno.ENOSPC, "No space left on device")
        if budget[0] > 0:
            budget[0] -= 1
        real(fd, data)

    monkeypatch.setattr(writer_module, "_write_all", write_all)
    return budget


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[FileWorld]:
    world = await FileWorld(tmp_path / "w").open()
    yield world
    await world.aclose()


@pytest.mark.parametrize("succeed", [0, 1, 2, 3, 5])
async def test_concurrent_appends_on_a_full_disk_keep_disk_and_views_equal(
    world: FileWorld, full_after: list[int], succeed: int
) -> None:
    runs = [f"r{i}" for i in range(6)]
    for run_id in runs:
        await world.append(run_id, _created(run_id))  # type: ignore[arg-type]
    full_after[0] = succeed
    outcomes = await asyncio.gather(
        *(world.append(r, [EventRaised(run_id=r, name="e", payload=_BIG)] * 2) for r in runs),
        return_exceptions=True,
    )
    failed = [r for r, o in zip(runs, outcomes, strict=True) if isinstance(o, BaseException)]
    assert failed, "the disk filled up: some append must have been refused"
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, WorldError)
            assert "ENOSPC" in str(outcome)
    full_after[0] = -1
    live = {r: [e.seq for e in (await world.list_events(r)).items] for r in runs}
    for r in failed:
        assert live[r] == [1, 2]
        await world.append(r, [EventRaised(run_id=r, name="again")])  # writes resume
    path = world.path
    await world.aclose()
    async with FileWorld(path) as reopened:
        for r in runs:
            events = (await reopened.list_events(r)).items
            expected = live[r] + ([3] if r in failed else [])
            assert [e.seq for e in events] == expected
            assert (await reopened.get_run(r)).corrupt is None


async def test_close_after_the_writer_failed_releases_thread_and_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await FileWorld(tmp_path / "w").open()
    await world.append("r", _created("r"))  # type: ignore[arg-type]

    def broken(fd: int, data: bytes) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writer_module, "_write_all", broken)
    with pytest.raises(WorldError, match="Input/output error"):
        await world.append("r", [EventRaised(run_id="r", name="e")])
    await world.aclose()
    assert _writer_threads() == []
    monkeypatch.undo()
    async with FileWorld(tmp_path / "w") as again:
        assert (await again.get_run("r")).last_seq == 2


async def test_the_index_holds_no_second_copy_of_a_big_payload(tmp_path: Path) -> None:
    """The issue's example: a 50 MB output took 100 MB in the index (the step's output and
    the run's). Here 3 MB: the index stays small, the reopened views hold the payload."""
    root = tmp_path / "w"
    big = msgspec.Raw(b'"' + b"y" * 3_000_000 + b'"')
    async with FileWorld(root) as world:
        await world.append("r", _created("r"))  # type: ignore[arg-type]
        await world.append(
            "r",
            [
                StepCreated(run_id="r", correlation_id="s", step_name="make", input=big),
                StepStarted(run_id="r", correlation_id="s"),
                StepCompleted(run_id="r", correlation_id="s", result=big),
                RunCompleted(run_id="r", output=big),
            ],
        )
        await world.append("small", _created("small"))  # type: ignore[arg-type]
    index = (root / "index.json").stat().st_size
    assert index < 200_000, f"index.json is {index} bytes"
    for _ in range(2):
        async with FileWorld(root) as world:
            run = await world.get_run("r")
            assert (run.status, run.corrupt, bytes(run.output)) == (
                RunStatus.COMPLETED,
                None,
                bytes(big),
            )
            (step,) = (await world.list_steps("r")).items
            assert bytes(step.output) == bytes(big)
            assert bytes(step.input) == bytes(big)
            assert (await world.get_run("small")).input == _BIG
    log = next(p for p in (root / "runs").iterdir() if p.name.startswith("r."))
    data = log.read_bytes()
    log.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # the last line cut off
    async with FileWorld(root) as world:
        (r,) = [x for x in (await world.list_runs()).items if x.run_id == "r"]
        assert r.corrupt is not None
        assert "truncated" in r.corrupt


async def test_an_open_removes_the_debris_of_every_atomic_write_cut_short(tmp_path: Path) -> None:
    """Temporary files of an atomic replace cut short (a full disk, a kill) are removed by the
    next open, even when the open writes nothing that would replace them (the index is
    current), and whichever file they were for."""
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await world.append("r", _created("r"))  # type: ignore[arg-type]
    debris = [root / ".index.json.tmp", root / ".format.json.tmp", root / ".anything.tmp"]
    for path in debris:
        path.write_bytes(b"debris of an earlier full disk")
    async with FileWorld(root) as world:
        assert [path.name for path in debris if path.exists()] == []
        assert (await world.get_run("r")).last_seq == 2
