"""What only the file world does: the on-disk format, crash recovery, the writer lock,
read-only followers, group commit, the index. The protocol itself is checked by the
conformance suite (``test_conformance.py``), which runs the file world with fsync on."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import textwrap
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from worldflow import (
    ConfigurationError,
    CorruptLogError,
    EntityConflictError,
    WorldError,
    WorldLockedError,
)
from worldflow.worlds import (
    FileWorld,
    HookCreated,
    HookStatus,
    Payload,
    QueueMessage,
    RunCompleted,
    RunCreated,
    RunStarted,
    RunStatus,
    StepCompleted,
    StepCreated,
    StepStarted,
    WaitCreated,
    WorkflowInfo,
    World,
    new_id,
    open_world,
)
from worldflow.worlds._file import writer as writer_module

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def payload(value: object) -> Payload:
    return msgspec.Raw(msgspec.json.encode(value))


async def new_run(
    world: World,
    run_id: str,
    *,
    workflow_name: str = "wf",
    resource_id: str | None = None,
    metadata: dict[str, str] | None = None,
    started: bool = False,
) -> None:
    created = RunCreated(
        run_id=run_id,
        workflow_name=workflow_name,
        input=payload({"run": run_id}),
        resource_id=resource_id,
        metadata=metadata or {},
    )
    await world.append(run_id, [created, RunStarted(run_id=run_id)] if started else [created])


async def start_step(world: World, run_id: str, step_id: str | None = None) -> str:
    step_id = step_id or new_id("step")
    await world.append(
        run_id,
        [
            StepCreated(run_id=run_id, correlation_id=step_id, step_name="s", input=payload(1)),
            StepStarted(run_id=run_id, correlation_id=step_id),
        ],
    )
    return step_id


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[FileWorld]:
    async with FileWorld(tmp_path / "world") as opened:
        yield opened


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def log_of(world: FileWorld, run_id: str) -> Path:
    """The log file of a run (the world knows where it put it)."""
    [path] = [p for p in (world.path / "runs").iterdir() if run_id in p.read_text()]
    return path


async def populate(world: World) -> None:
    """A bit of everything: runs in every state, steps, hooks, waits, streams, messages."""
    await new_run(world, "r-done", workflow_name="a", metadata={"k": "v"}, started=True)
    step = await start_step(world, "r-done")
    await world.append(
        "r-done",
        [
            StepCompleted(run_id="r-done", correlation_id=step, result=payload(1)),
            HookCreated(run_id="r-done", correlation_id="hook_1", token="tok-1"),
            RunCompleted(run_id="r-done", output=payload("out")),
        ],
    )
    await new_run(world, "r-live", workflow_name="b", resource_id="u-1", started=True)
    await start_step(world, "r-live", "step_live")
    await world.append(
        "r-live",
        [
            HookCreated(run_id="r-live", correlation_id="hook_2", token="tok-2"),
            HookCreated(run_id="r-live", correlation_id="hook_3", token="tok-2"),  # conflict
            WaitCreated(run_id="r-live", correlation_id="wait_1", event_name="go"),
        ],
    )
    await new_run(world, "Capitals/and spaces é")
    # An engine's batches (expected_seq: the times are the engine's, fed to the body first):
    # a start fused with the first step, then its result fused with the run's end. Their
    # views take the first event's time, on reopen as when they were appended.
    engine_time = datetime(2031, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    fused = "r-fused"
    step = "step_fused"
    await world.append(
        fused,
        [
            RunCreated(run_id=fused, workflow_name="c", input=payload(0), created_at=engine_time),
            RunStarted(run_id=fused, created_at=engine_time),
            StepCreated(run_id=fused, correlation_id=step, step_name="s", input=payload(1)),
            StepStarted(run_id=fused, correlation_id=step),
        ],
        expected_seq=0,
    )
    later = engine_time + timedelta(seconds=1)
    await world.append(
        fused,
        [
            StepCompleted(run_id=fused, correlation_id=step, result=payload(2), created_at=later),
            RunCompleted(run_id=fused, output=payload(2)),
        ],
        expected_seq=4,
    )
    await world.write_stream("r-live", "out", [b"a", b"\x00\xff", b""])
    await world.close_stream("r-done", "empty")
    await world.enqueue("runs", QueueMessage(kind="run", run_id="r-live"), idempotency_key="k")
    await world.enqueue("steps", QueueMessage(kind="step", run_id="r-live", step_id="s"), delay=60)


async def views(world: World) -> dict[str, object]:
    """Everything a reader can see, as plain data."""
    runs = (await world.list_runs(order="asc")).items
    seen: dict[str, object] = {"runs": runs}
    for run in runs:
        seen[f"events {run.run_id}"] = (await world.list_events(run.run_id)).items
        seen[f"steps {run.run_id}"] = (await world.list_steps(run.run_id)).items
        seen[f"streams {run.run_id}"] = await world.list_streams(run.run_id)
    seen["hooks"] = (await world.list_hooks()).items
    seen["waits"] = (await world.list_waits()).items
    live = (await world.list_hooks(status=HookStatus.ACTIVE)).items
    seen["tokens"] = [(h.token, h.hook_id) for h in live]
    seen["chunks"] = [c async for c in world.read_stream("r-live", "out", follow=False)]
    return seen


# -- opening ---------------------------------------------------------------------------------


async def test_open_world_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = await open_world("file://./.worldflow")
    assert isinstance(relative, FileWorld)
    assert relative.path == tmp_path / ".worldflow"
    assert relative.fsync
    await relative.aclose()
    absolute = await open_world(f"file://{tmp_path}/abs?fsync=0")
    assert isinstance(absolute, FileWorld)
    assert (absolute.path, absolute.fsync) == (tmp_path / "abs", False)
    reader = await open_world(f"file://{tmp_path}/abs?read_only=1")
    assert isinstance(reader, FileWorld)
    assert reader.read_only
    await reader.aclose()
    await absolute.aclose()
    with pytest.raises(ConfigurationError, match="unknown option 'sync'"):
        await open_world(f"file://{tmp_path}/x?sync=1")
    with pytest.raises(ConfigurationError, match="no worldflow file world"):
        await open_world(f"file://{tmp_path}/missing?read_only=1")


async def test_a_world_must_be_opened_before_use(tmp_path: Path) -> None:
    world = FileWorld(tmp_path / "w")
    with pytest.raises(WorldError, match="not open yet"):
        await world.get_run("r")
    await world.open()
    assert await world.open() is world  # idempotent
    await world.aclose()
    await world.aclose()
    with pytest.raises(WorldError, match="closed"):
        await world.open()


async def test_format_version_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "w"
    async with FileWorld(root):
        pass
    assert (root / "FORMAT").read_text() == "worldflow file world\nformat 1\n"
    (root / "FORMAT").write_text("worldflow file world\nformat 2\n")
    with pytest.raises(ConfigurationError, match=r"format 2.*reads format 1.*newer worldflow"):
        await FileWorld(root).open()
    (root / "FORMAT").write_text("something else")
    with pytest.raises(ConfigurationError, match="not a worldflow file-world format marker"):
        await FileWorld(root).open()


async def test_a_directory_of_other_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()  # empty: what a crash during the first open leaves
    async with FileWorld(tmp_path):
        pass
    (tmp_path / "FORMAT").unlink()
    (tmp_path / "runs" / "x.jsonl").write_bytes(b"{}\n")
    with pytest.raises(ConfigurationError, match="no FORMAT marker"):
        await FileWorld(tmp_path).open()


# -- reopening -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", ["kept", "deleted", "garbled", "stale"])
async def test_reopen_rebuilds_identical_views(tmp_path: Path, index: str) -> None:
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await populate(world)
        before = await views(world)
    if index == "deleted":
        (root / "index.json").unlink()
    elif index == "garbled":
        (root / "index.json").write_bytes(b'{"version": 1, "runs": [[')
    elif index == "stale":  # the index of an older state: logs that grew are replayed
        async with FileWorld(root) as world:
            snapshot = (root / "index.json").read_bytes()
            await world.append("r-live", [RunCompleted(run_id="r-live", output=payload(2))])
            before = await views(world)
        (root / "index.json").write_bytes(snapshot)
    async with FileWorld(root) as reopened:
        assert await views(reopened) == before
        # the rebuilt world goes on where the old one stopped
        await reopened.append(
            "Capitals/and spaces é",
            [RunCompleted(run_id="Capitals/and spaces é", output=payload(3))],
        )
    assert json.loads((root / "index.json").read_bytes())["version"] == 1


async def test_queue_survives_reopen(tmp_path: Path) -> None:
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        kept = await world.enqueue("q", QueueMessage(kind="run", run_id="a"), idempotency_key="a")
        acked = await world.enqueue("q", QueueMessage(kind="run", run_id="b"))
        await world.enqueue("later", QueueMessage(kind="run", run_id="c"), delay=3600)
        leases = await world.lease("q", lease_for=60, max_messages=2)
        assert {lease.message_id for lease in leases} == {kept, acked}
        for lease in leases:
            if lease.message_id == acked:
                await world.ack(lease)
    async with FileWorld(root) as world:
        # the lease held by the closed world is void: delivered again, as its second attempt
        [again] = await world.lease("q", lease_for=60, max_messages=5)
        assert (again.message_id, again.attempt) == (kept, 2)
        assert await world.lease("later", lease_for=60) == []  # still an hour away
        await world.nack(again, delay=0)
        # a delivered message gave its idempotency key up for good
        other = await world.enqueue("q", QueueMessage(kind="run", run_id="a"), idempotency_key="a")
        assert other != kept
    async with FileWorld(root) as world:
        leased = await world.lease("q", lease_for=60, max_messages=5)
        assert sorted((lease.message_id, lease.attempt) for lease in leased) == sorted(
            [(kept, 3), (other, 1)]
        )


# -- crash debris ----------------------------------------------------------------------------


async def test_torn_last_line_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await new_run(world, "r", started=True)
        path = log_of(world, "r")
    intact = path.read_bytes()
    append_bytes(path, b'{"type":"step_created","run_id":"r","seq":3,"corr')  # cut mid-write
    with caplog.at_level(logging.WARNING, logger="worldflow.worlds.file"):
        async with FileWorld(root) as world:
            assert (await world.get_run("r")).last_seq == 2
            assert path.read_bytes() == intact  # cut off before anything is appended
            await start_step(world, "r", "step_1")
    assert any("torn last line" in r.message and str(path) in r.message for r in caplog.records)
    async with FileWorld(root) as world:
        assert [e.type for e in (await world.list_events("r")).items][-2:] == [
            "step_created",
            "step_started",
        ]


_PRELUDE = """
import asyncio, os, signal, sys
import msgspec
from worldflow.worlds import FileWorld, QueueMessage, RunCreated, StepCreated

ONE = msgspec.Raw(b"1")

def created(rid):
    return [RunCreated(run_id=rid, workflow_name="wf", input=ONE)]

def step(rid, sid):
    return [StepCreated(run_id=rid, correlation_id=sid, step_name="s", input=ONE)]
"""


async def crashing_writer(root: Path, body: str) -> str:
    """Run ``body`` (with ``world`` open) in a child process that then SIGKILLs itself;
    return what it printed."""
    script = (
        _PRELUDE
        + "async def main():\n"
        + f"    world = await FileWorld({str(root)!r}).open()\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "    sys.stdout.flush()\n"
        + "    os.kill(os.getpid(), signal.SIGKILL)\n"
        + "asyncio.run(main())\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO, stdout=PIPE, stderr=PIPE
    )
    out, err = await child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    return out.decode()


async def test_a_killed_writer_loses_nothing_acknowledged(tmp_path: Path) -> None:
    root = tmp_path / "w"
    printed = await crashing_writer(
        root,
        """
        async def run(i):
            rid = f"r{i}"
            await world.append(rid, created(rid))
            for n in range(5):
                await world.append(rid, step(rid, f"s{n}"))
                print(rid, n + 2, flush=True)
        await asyncio.gather(*(run(i) for i in range(20)))
        await world.enqueue("q", QueueMessage(kind="run", run_id="r0"))
        print("enqueued", flush=True)
        """,
    )
    acked: dict[str, int] = {}
    for line in printed.splitlines():
        if line.startswith("r"):
            rid, number = line.split()
            acked[rid] = max(acked.get(rid, 0), int(number))
    assert "enqueued" in printed
    assert '"pid"' in (root / "LOCK").read_text()  # no clean release...
    async with FileWorld(root) as world:  # ...but the lock died with its holder
        for rid, seq in acked.items():
            assert (await world.get_run(rid)).last_seq >= seq
        [lease] = await world.lease("q", lease_for=10)
        assert lease.message.run_id == "r0"


async def test_the_journal_restores_what_a_power_cut_took(tmp_path: Path) -> None:
    root = tmp_path / "w"
    await crashing_writer(
        root,
        """
        for i in range(10):
            await world.append(f"r{i}", created(f"r{i}"))
            await world.append(f"r{i}", step(f"r{i}", "s"))
        """,
    )
    # a power cut loses writes that were not synced: the run logs were not (the journal was)
    for i, path in enumerate(sorted((root / "runs").iterdir())):
        data = path.read_bytes()
        if i % 3 == 0:
            path.write_bytes(b"")
        elif i % 3 == 1:
            path.write_bytes(data[: len(data) // 2])
        else:
            path.write_bytes(data[:10] + bytes(len(data) - 10))  # zeros where data was
    async with FileWorld(root) as world:
        for i in range(10):
            events = (await world.list_events(f"r{i}")).items
            assert [e.type for e in events] == ["run_created", "step_created"]


async def test_a_power_cut_leaves_no_debris_behind_restored_writes(tmp_path: Path) -> None:
    # Planted once (the bytes after a restored write kept) and caught by no test: the world
    # then refused to open with CorruptLogError.
    root = tmp_path / "w"
    await crashing_writer(
        root,
        """
        for i in range(4):
            await world.append(f"r{i}", created(f"r{i}"))
            await world.append(f"r{i}", step(f"r{i}", "s"))
        """,
    )
    # the power cut: the logs' unsynced blocks read as zeros, and blocks of writes that were
    # never acknowledged (the file had grown) lie behind them, whole lines among them
    for path in sorted((root / "runs").iterdir()):
        data = path.read_bytes()
        debris = bytes(40) + b"\n" + data.splitlines(keepends=True)[-1] + bytes(30)
        path.write_bytes(bytes(len(data)) + debris)
    async with FileWorld(root) as world:
        for i in range(4):
            events = (await world.list_events(f"r{i}")).items
            assert [e.type for e in events] == ["run_created", "step_created"]
            await start_step(world, f"r{i}", "s2")
    async with FileWorld(root) as world:  # and it opens again, with what was added
        for i in range(4):
            assert (await world.get_run(f"r{i}")).last_seq == 4


async def test_a_lease_that_died_with_its_writer_is_void_after_a_compaction(
    tmp_path: Path,
) -> None:
    # Planted once (a compaction wrote the live lease as if it were still held) and caught by
    # no test: the message stayed undeliverable for the dead lease's remaining hour.
    root = tmp_path / "w"
    printed = await crashing_writer(
        root,
        """
        from worldflow.worlds._file import queue as queue_module
        queue_module._COMPACT_MIN_RECORDS = 8  # compact after a few lines
        await world.enqueue("q", QueueMessage(kind="run", run_id="kept"))
        [held] = await world.lease("q", lease_for=3600, max_messages=1)
        print(held.message_id, held.attempt, flush=True)
        for i in range(40):  # journal lines about other messages: compactions come due
            await world.enqueue("other", QueueMessage(kind="run", run_id=f"o{i}"))
            [gone] = await world.lease("other", lease_for=60, max_messages=1)
            await world.ack(gone)
        await world.enqueue("q", QueueMessage(kind="run", run_id="after"), delay=7200)
        """,
    )
    kept_id, attempt = printed.split()
    journal = (root / "queue.jsonl").read_bytes()
    assert journal.count(b"\n") < 40, "the queue journal was never compacted"
    assert b'"leased":true' in journal, "the compaction did not see the live lease"
    async with FileWorld(root) as world:
        leases = await world.lease("q", lease_for=60, max_messages=5)
        assert [(lease.message_id, lease.attempt) for lease in leases] == [
            (kept_id, int(attempt) + 1)
        ]
        assert (await world.lease("other", lease_for=60, max_messages=5)) == []


# -- one writer, many readers ------------------------------------------------------------------


async def test_a_second_writer_is_locked_out(tmp_path: Path, world: FileWorld) -> None:
    with pytest.raises(WorldLockedError, match=f"pid {os.getpid()} on host") as raised:
        await FileWorld(world.path).open()
    assert "read_only=True" in str(raised.value)
    holder = [
        sys.executable,
        "-c",
        "import asyncio, sys\n"
        "from worldflow.worlds import FileWorld\n"
        "async def main():\n"
        f"    await FileWorld({str(tmp_path / 'other')!r}).open()\n"
        "    print('open', flush=True)\n"
        "    sys.stdin.read()\n"
        "asyncio.run(main())\n",
    ]
    process = await asyncio.create_subprocess_exec(*holder, stdin=PIPE, stdout=PIPE, cwd=REPO)
    try:
        assert process.stdout is not None
        assert await process.stdout.readline() == b"open\n"
        with pytest.raises(WorldLockedError, match=f"pid {process.pid} on host"):
            await FileWorld(tmp_path / "other").open()
    finally:
        process.kill()
        await process.wait()
    async with FileWorld(tmp_path / "other"):  # the lock died with the process
        pass


async def test_read_only_follows_a_live_writer(world: FileWorld) -> None:
    await new_run(world, "r", started=True)
    async with FileWorld(world.path, read_only=True, poll_interval=0.01) as reader:
        assert (await reader.get_run("r")).status is RunStatus.RUNNING
        counter = await reader.wait_for_world(after=0, timeout=0)

        async def follow() -> list[bytes]:
            return [c.data async for c in reader.read_stream("r", "out")]

        follower = asyncio.create_task(follow())
        step = await start_step(world, "r")
        assert await reader.wait_for_run("r", after_seq=2, timeout=10) == 4
        assert (await reader.get_step("r", step)).attempt == 1
        await world.write_stream("r", "out", [b"one"])
        await world.write_stream("r", "out", [b"two"])
        await world.close_stream("r", "out")
        assert await asyncio.wait_for(follower, 10) == [b"one", b"two"]
        await new_run(world, "r2")
        assert await reader.wait_for_world(after=counter, timeout=10) > counter
        while "r2" not in {r.run_id for r in (await reader.list_runs()).items}:
            await reader.wait_for_world(after=await reader.wait_for_world(after=0), timeout=10)
        await world.append("r", [RunCompleted(run_id="r", output=payload(1))])
        await world.purge("r")
        while "r" in {r.run_id for r in (await reader.list_runs()).items}:
            await reader.wait_for_world(after=await reader.wait_for_world(after=0), timeout=10)
        with pytest.raises(WorldError, match="read-only"):
            await reader.append("r2", [RunCompleted(run_id="r2", output=payload(1))])
        with pytest.raises(WorldError, match="read-only"):
            await reader.enqueue("q", QueueMessage(kind="run", run_id="r2"))
    assert await world.get_run("r2")  # the writer was not disturbed


# -- durability mechanics ----------------------------------------------------------------------


async def test_group_commit_shares_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FileWorld(tmp_path / "w") as world:
        syncs = 0
        real_fsync, real_fdatasync = os.fsync, os.fdatasync

        def counting(real: object) -> object:
            def sync(fd: int) -> None:
                nonlocal syncs
                syncs += 1
                real(fd)  # type: ignore[operator]

            return sync

        monkeypatch.setattr(os, "fsync", counting(real_fsync))
        monkeypatch.setattr(os, "fdatasync", counting(real_fdatasync))
        await asyncio.gather(*(new_run(world, f"r{i}") for i in range(200)))
        assert 1 <= syncs < 40, syncs  # 200 acknowledged appends, a handful of syncs
        assert world.writer_stats is not None
        assert world.writer_stats.writes == 200


async def test_an_append_cancelled_mid_write_still_lands_in_the_views(world: FileWorld) -> None:
    await new_run(world, "r")
    task = asyncio.create_task(start_step(world, "r", "step_1"))
    await asyncio.sleep(0)  # the append is now waiting for its write
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # what is on disk is what the views say
    assert (await world.get_run("r")).last_seq == 3
    async with FileWorld(world.path, read_only=True) as reader:
        assert (await reader.get_run("r")).last_seq == 3


async def test_appends_to_one_run_take_turns_and_a_cancelled_waiter_passes_its_turn(
    world: FileWorld,
) -> None:
    await new_run(world, "r")
    first = asyncio.create_task(start_step(world, "r", "step_1"))
    second = asyncio.create_task(start_step(world, "r", "step_2"))
    third = asyncio.create_task(start_step(world, "r", "step_3"))
    await asyncio.sleep(0)  # the first writes, the other two wait for the run's turn
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await third
    events = (await world.list_events("r")).items
    assert [e.correlation_id for e in events[1:]] == ["step_1", "step_1", "step_3", "step_3"]
    await start_step(world, "r", "step_4")  # the turn is free again
    assert (await world.get_run("r")).last_seq == 7


async def test_a_failed_write_stops_the_writer(
    world: FileWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    await new_run(world, "r")
    real_write = os.write

    def broken_disk(fd: int, data: bytes) -> int:
        # (a full disk does not stop it: see test_file_full_disk.py)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "write", broken_disk)
    with pytest.raises(WorldError, match="Input/output error"):
        await start_step(world, "r")
    monkeypatch.setattr(os, "write", real_write)
    assert (await world.get_run("r")).last_seq == 1  # the views did not move
    with pytest.raises(WorldError, match="stopped after a failed write"):
        await start_step(world, "r")


async def test_purge_deletes_the_files(world: FileWorld) -> None:
    await new_run(world, "r")
    await world.write_stream("r", "out", [b"x"])
    await world.append("r", [RunCompleted(run_id="r", output=payload(1))])
    log = log_of(world, "r")
    await world.purge("r")
    assert not log.exists()
    assert list((world.path / "streams").iterdir()) == []
    await new_run(world, "r")  # the id is free again
    with pytest.raises(EntityConflictError):
        await new_run(world, "r")


async def test_stream_files_survive_and_drop_a_torn_frame(tmp_path: Path) -> None:
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await new_run(world, "r")
        await world.write_stream("r", "bin", [bytes(range(256)), b"\n\n"])
    [path] = (root / "streams").glob("*/*.chunks")
    append_bytes(path, b"D\x00\x00\x00\x09")  # a frame header cut short
    async with FileWorld(root) as world:
        chunks = [c.data async for c in world.read_stream("r", "bin", follow=False)]
        assert chunks == [bytes(range(256)), b"\n\n"]
        assert await world.write_stream("r", "bin", [b"more"]) == 3
    data = path.read_bytes()
    path.write_bytes(data[:20] + b"X" + data[21:])  # damage inside the first chunk
    with pytest.raises(CorruptLogError, match=r"byte \d+: checksum mismatch"):
        await FileWorld(root).open()


async def test_events_of_indexed_runs_load_on_demand(tmp_path: Path) -> None:
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await new_run(world, "r", started=True)
        step = await start_step(world, "r")
        expected = (await world.list_events("r")).items
    async with FileWorld(root) as world:
        assert (await world.get_run("r")).last_seq == 4
        assert (await world.list_events("r", after_seq=1, limit=2)).items == expected[1:3]
        await world.append("r", [StepCompleted(run_id="r", correlation_id=step, result=NULL_1)])
        assert [e.seq for e in (await world.list_events("r")).items] == [1, 2, 3, 4, 5]


NULL_1 = msgspec.Raw(b"1")


async def test_checkpoints_and_closed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "_WAL_LIMIT", 4096)  # a checkpoint every few commits
    monkeypatch.setattr(writer_module, "_MAX_OPEN_FILES", 4)  # files closed while dirty
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await asyncio.gather(*(new_run(world, f"r{i}") for i in range(30)))
        for _ in range(3):
            for i in range(30):
                await start_step(world, f"r{i}")
        stats = world.writer_stats
        assert stats is not None
        assert stats.checkpoints > 3
        before = await views_of_runs(world, 30)
    assert writer_module.replay_wal(root) == 0  # closed: nothing left to replay
    async with FileWorld(root) as world:
        assert await views_of_runs(world, 30) == before


async def views_of_runs(world: World, count: int) -> list[object]:
    return [(await world.list_events(f"r{i}")).items for i in range(count)]


async def test_a_token_claimed_by_an_append_in_flight_is_taken(world: FileWorld) -> None:
    # appends commit once durable, so two runs racing for a token both check it before
    # either is in the token table: the world must still give it to one hook only
    await asyncio.gather(new_run(world, "a"), new_run(world, "b"))

    async def claim(run_id: str) -> str:
        hook = HookCreated(run_id=run_id, correlation_id=f"hook_{run_id}", token="shared")
        return (await world.append(run_id, [hook])).events[0].type

    assert sorted(await asyncio.gather(claim("a"), claim("b"))) == ["hook_conflict", "hook_created"]
    holder = await world.get_hook_by_token("shared")
    assert holder.run_id in ("a", "b")


async def test_the_catalog_survives_a_reopen_and_old_owners_are_orphaned(tmp_path: Path) -> None:
    entry = WorkflowInfo(name="shop:checkout", step_names=["charge"], doc="Check out.")
    async with FileWorld(tmp_path / "w") as world:
        engine = await world.register_engine(workflows=[entry.name], ttl=600)
        await world.publish_workflows([entry])
        await new_run(world, "r-owned")
        claimed = await world.claim_orphans(engine.engine_id, workflows=["wf"], limit=1)
        assert [r.owner_id for r in claimed] == [engine.engine_id]
        async with FileWorld(tmp_path / "w", read_only=True) as reader:
            assert await reader.list_workflows() == [entry]
        assert (await world.get_workflow(entry.name)).engines == (engine.engine_id,)
    async with FileWorld(tmp_path / "w") as reopened:
        assert await reopened.get_workflow(entry.name) == entry  # no engine serves it now
        assert await reopened.list_engines() == []
        new = await reopened.register_engine(workflows=["wf"], ttl=600)
        # the engines of the last writer are gone: their runs are orphans
        [again] = await reopened.claim_orphans(new.engine_id, workflows=["wf"], limit=5)
        assert (again.run_id, again.owner_id) == ("r-owned", new.engine_id)


async def test_a_damaged_catalog_is_reported_with_its_file(tmp_path: Path) -> None:
    async with FileWorld(tmp_path / "w"):
        pass
    (tmp_path / "w" / "catalog.json").write_text("[{not json")
    with pytest.raises(CorruptLogError, match=r"catalog\.json"):
        await FileWorld(tmp_path / "w").open()
