"""A damaged run log makes that run unusable, never the world (issue #10, "One damaged run
blocks every run"): the world opens, the run is listed with its ``corrupt`` mark, every read
or write of it raises :class:`CorruptLogError` naming the file and line, and every other run
works. Only a last line without its newline is a crash's torn tail."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine.runtime import WAIT, running
from tests.worlds.test_file_world import append_bytes, log_of, new_run, payload, start_step
from worldflow import ConfigurationError, CorruptLogError, WorldError, step, workflow
from worldflow.worlds import (
    EventRaised,
    FileWorld,
    RunStatus,
    StepCompleted,
)

pytestmark = pytest.mark.anyio


def _swap_type(line: bytes) -> bytes:
    return line.replace(b'"type"', b'"tpye"')


def _not_json(line: bytes) -> bytes:
    return b"{this is not json}\n"


def _cut_inside(line: bytes) -> bytes:
    return line[: len(line) // 2] + b"\n"  # a whole line, newline and all, that decodes to nothing


def _zeros(line: bytes) -> bytes:
    return b"\x00" * 8 + b"\n"


DAMAGES: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("field-renamed", _swap_type),
    ("not-json", _not_json),
    ("half-a-line", _cut_inside),
    ("zeros", _zeros),
]


async def _two_runs(root: Path) -> Path:
    """Runs ``bad`` (three lines) and ``good``; returns ``bad``'s log."""
    async with FileWorld(root) as world:
        await new_run(world, "bad", started=True)
        await start_step(world, "bad", "step_1")
        await world.append("bad", [EventRaised(run_id="bad", name="e", payload=payload(1))])
        await new_run(world, "good", started=True)
        return log_of(world, "bad")


async def _assert_unusable(world: FileWorld, run_id: str, pattern: str) -> None:
    for read in (
        world.get_run(run_id),
        world.list_events(run_id),
        world.list_steps(run_id),
        world.wait_for_run(run_id, after_seq=0, timeout=0),
        world.append(run_id, [EventRaised(run_id=run_id, name="x")]),
    ):
        with pytest.raises(CorruptLogError, match=pattern):
            await read


async def _assert_usable(world: FileWorld, run_id: str) -> None:
    step_id = await start_step(world, run_id)
    done = await world.append(
        run_id, [StepCompleted(run_id=run_id, correlation_id=step_id, result=payload(2))]
    )
    assert done.run.corrupt is None
    assert (await world.list_events(run_id)).items[-1].type == "step_completed"


@pytest.mark.parametrize("line", [1, 2, 3], ids=["first", "middle", "last"])
@pytest.mark.parametrize("damage", [pytest.param(d, id=i) for i, d in DAMAGES])
async def test_a_damaged_line_marks_its_run_and_the_rest_works(
    tmp_path: Path, line: int, damage: Callable[[bytes], bytes]
) -> None:
    root = tmp_path / "w"
    path = await _two_runs(root)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    lines[line - 1] = damage(lines[line - 1])
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    (root / "index.json").unlink(missing_ok=True)
    where = f"{re.escape(str(path))}, line {line}"
    for _ in range(2):  # and again after a close: the damage is found again, never indexed
        async with FileWorld(root) as world:
            runs = {r.run_id: r for r in (await world.list_runs()).items}
            assert {"bad", "good"} <= set(runs)
            assert runs["good"].corrupt is None
            mark = runs["bad"].corrupt
            assert mark is not None
            assert re.search(where, mark), mark
            await _assert_unusable(world, "bad", where)
            await _assert_usable(world, "good")
            await new_run(world, f"new-{_}")
        assert path.read_bytes() == damaged  # the evidence is never cut or rewritten


async def test_only_a_last_line_without_its_newline_is_a_torn_tail(tmp_path: Path) -> None:
    root = tmp_path / "w"
    path = await _two_runs(root)
    intact = path.read_bytes()
    append_bytes(path, b'{"type":"event_raised","run_id":"bad","se')
    async with FileWorld(root) as world:
        assert (await world.get_run("bad")).corrupt is None
        assert (await world.get_run("bad")).last_seq == 5
        assert path.read_bytes() == intact
        await _assert_usable(world, "bad")


async def test_a_cancel_written_whole_is_never_dropped_as_torn(tmp_path: Path) -> None:
    """The issue's example: a complete last line that did not decode was dropped as a torn
    tail, so an acknowledged cancel vanished and the run came back to life."""
    root = tmp_path / "w"
    path = await _two_runs(root)
    append_bytes(path, b'{"type":"run_cancelled","run_id":"bad","seq":6,"reason":5}\n')
    (root / "index.json").unlink()
    async with FileWorld(root) as world:
        view = (await world.list_runs(status=RunStatus.RUNNING)).items
        assert [r.run_id for r in view if r.corrupt is None] == ["good"]
        with pytest.raises(CorruptLogError, match="line 4"):
            await world.get_run("bad")


async def test_a_log_that_breaks_the_rules_marks_its_run(tmp_path: Path) -> None:
    root = tmp_path / "w"
    path = await _two_runs(root)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines, lines[-1]]))  # a line repeated: its seq twice
    (root / "index.json").unlink()
    async with FileWorld(root) as world:
        (bad,) = [r for r in (await world.list_runs()).items if r.run_id == "bad"]
        assert bad.corrupt is not None
        assert "line 4: the logged events break" in bad.corrupt
        await _assert_unusable(world, "bad", "line 4")
        await _assert_usable(world, "good")


async def test_a_log_with_no_readable_line_is_listed_by_its_file_name(tmp_path: Path) -> None:
    root = tmp_path / "w"
    path = await _two_runs(root)
    path.write_bytes(b"garbage\n")
    (root / "index.json").unlink()
    async with FileWorld(root) as world:
        runs = {r.run_id: r for r in (await world.list_runs()).items}
        assert runs["bad"].corrupt is not None
        assert "line 1" in runs["bad"].corrupt
        await _assert_unusable(world, "bad", "line 1")
        await _assert_usable(world, "good")


@pytest.mark.parametrize("cut", ["a-whole-line", "mid-line", "everything"])
async def test_a_log_shorter_than_the_index_says_is_corrupt_not_rolled_back(
    tmp_path: Path, cut: str
) -> None:
    """The issue's example: a truncated log was silently rolled back, so a completed run
    went back to running and re-ran its last step."""
    root = tmp_path / "w"
    async with FileWorld(root) as world:
        await new_run(world, "bad", started=True)
        step_id = await start_step(world, "bad")
        await world.append(
            "bad", [StepCompleted(run_id="bad", correlation_id=step_id, result=payload(1))]
        )
        await new_run(world, "good", started=True)
        path = log_of(world, "bad")
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    keep = {
        "a-whole-line": len(data) - len(lines[-1]),
        "mid-line": len(data) - len(lines[-1]) // 2,
        "everything": 0,
    }[cut]
    path.write_bytes(data[:keep])
    short = path.read_bytes()
    for _ in range(2):
        async with FileWorld(root) as world:
            runs = {r.run_id: r for r in (await world.list_runs()).items}
            mark = runs["bad"].corrupt
            assert mark is not None
            assert "truncated" in mark
            assert str(len(data)) in mark
            await _assert_unusable(world, "bad", "truncated")
            await _assert_usable(world, "good")
        assert path.read_bytes() == short


async def test_a_damaged_log_found_when_its_events_are_first_read(tmp_path: Path) -> None:
    """The index describes the log (same length), so the run opens from it; its log is
    decoded, found damaged, and the run marked, when its events are first needed."""
    root = tmp_path / "w"
    path = await _two_runs(root)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([_swap_type(lines[0]), *lines[1:]]))
    async with FileWorld(root) as world:
        assert (await world.get_run("bad")).last_seq == 5
        with pytest.raises(CorruptLogError, match=f"{re.escape(str(path))}, line 1: "):
            await world.list_events("bad")
        (bad,) = [r for r in (await world.list_runs()).items if r.run_id == "bad"]
        assert bad.corrupt is not None
        await _assert_unusable(world, "bad", "line 1")
        await _assert_usable(world, "good")


@step
async def plus_one(x: int) -> int:
    """``x + 1``."""
    return x + 1


@workflow
async def counting(x: int) -> int:
    """One step."""
    return await plus_one(x)


async def test_an_engine_on_a_world_with_a_damaged_run_drives_the_others(
    tmp_path: Path,
) -> None:
    root = tmp_path / "w"
    async with FileWorld(root) as world, running(world, [counting]) as engine:
        first = await engine.start(counting, 1, run_id="bad")
        assert await first.result(timeout=WAIT) == 2
        path = log_of(world, "bad")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:-1], _not_json(lines[-1])]))
    (root / "index.json").unlink()
    async with FileWorld(root) as world, running(world, [counting]) as engine:
        with pytest.raises(CorruptLogError):
            await (await engine.get_run("bad")).result(timeout=WAIT)
        listed = {r.run_id: r for r in (await engine.list_runs()).items}
        assert listed["bad"].corrupt is not None
        other = await engine.start(counting, 41, run_id="good")
        assert await other.result(timeout=WAIT) == 42


async def test_a_read_only_follower_marks_a_run_damaged_while_it_watches(
    tmp_path: Path,
) -> None:
    root = tmp_path / "w"
    path = await _two_runs(root)
    async with FileWorld(root, read_only=True, poll_interval=0.01) as follower:
        assert (await follower.get_run("bad")).corrupt is None
        append_bytes(path, b"{damaged}\n")
        after = await follower.wait_for_world(after=0, timeout=WAIT)
        assert after > 0
        (bad,) = [r for r in (await follower.list_runs()).items if r.run_id == "bad"]
        assert bad.corrupt is not None
        assert "line 4" in bad.corrupt
        assert (await follower.get_run("good")).corrupt is None


async def test_a_closed_file_world_says_it_is_a_file_world(tmp_path: Path) -> None:
    world = await FileWorld(tmp_path / "w").open()
    await new_run(world, "r")
    await world.aclose()
    with pytest.raises(WorldError, match=r"file world at .* was closed") as raised:
        await world.get_run("r")
    assert "MemoryWorld" not in str(raised.value)


@pytest.mark.parametrize("where", ["the-path", "a-parent"])
async def test_a_world_path_that_is_a_file_is_a_configuration_error(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    path = blocker if where == "the-path" else blocker / "world"
    for read_only in (False, True):
        with pytest.raises(ConfigurationError, match=r"is a file, not a directory"):
            await FileWorld(path, read_only=read_only).open()
