"""The ``worldflow`` command against a file world an engine wrote (and is still holding)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from worldflow import Engine, FatalError, step, workflow
from worldflow._cli import main
from worldflow.worlds import FileWorld, decode_event


@step(max_retries=0)
async def double(x: int) -> int:
    if x < 0:
        raise FatalError("negative")
    return 2 * x


@workflow
async def doubler(x: int) -> int:
    return await double(x)


pytestmark = pytest.mark.anyio


async def _make_runs(path: Path) -> FileWorld:
    world = await FileWorld(path, fsync=False).open()
    async with Engine(world, [doubler]) as engine:
        ok = await engine.start(doubler, 21, run_id="ok-run", resource_id="user-1")
        bad = await engine.start(doubler, -1, run_id="bad-run")
        assert await ok.result(timeout=10) == 42
        with pytest.raises(Exception, match="negative"):
            await bad.result(timeout=10)
        fork = await engine.fork("ok-run", from_step="double", input={"x": 5}, run_id="fork-run")
        assert await fork.result(timeout=10) == 10
    return world  # still open: the CLI must read it while the writer holds the lock


async def cli(*argv: str) -> int:
    """Run the command in a thread (it runs its own event loop, as from a shell)."""
    return await asyncio.to_thread(main, list(argv))


async def test_runs_show_events_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = await _make_runs(tmp_path / "wf")
    url = f"file://{tmp_path / 'wf'}"
    try:
        assert await cli("--world", url, "runs") == 0
        listing = capsys.readouterr().out
        assert "ok-run" in listing
        assert "bad-run" in listing
        assert "completed" in listing

        assert await cli("--world", url, "runs", "--status", "failed") == 0
        failed = capsys.readouterr().out
        assert "bad-run" in failed
        assert "ok-run" not in failed

        assert await cli("--world", url, "show", "ok-run") == 0
        shown = capsys.readouterr().out
        assert "output    42" in shown
        assert "step double: done" in shown

        assert "forks     fork-run" in shown
        assert await cli("--world", url, "runs", "--forked-from", "ok-run") == 0
        forks = capsys.readouterr().out
        assert "fork-run" in forks
        assert "bad-run" not in forks
        assert await cli("--world", url, "show", "fork-run") == 0
        assert "fork of   ok-run at step step_" in capsys.readouterr().out

        assert await cli("--world", url, "show", "bad-run") == 0
        assert "FatalError: negative" in capsys.readouterr().out

        assert await cli("--world", url, "events", "ok-run") == 0
        lines = capsys.readouterr().out.splitlines()
        types = [decode_event(line).type for line in lines]
        assert types[0] == "run_created"
        assert types[-1] == "run_completed"

        target = tmp_path / "ok.jsonl"
        assert await cli("--world", url, "export", "ok-run", str(target)) == 0
        exported = target.read_bytes().splitlines()
        assert [decode_event(x).type for x in exported] == types
    finally:
        await world.aclose()


async def test_unknown_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await (await _make_runs(tmp_path / "wf")).aclose()
    assert await cli("--world", f"file://{tmp_path / 'wf'}", "show", "nope") == 1
    assert "RunNotFoundError" in capsys.readouterr().err


HISTORIES = Path(__file__).parent / "histories"


def test_check_passes_histories_that_replay(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(HISTORIES / "order-approved.jsonl"), str(HISTORIES / "order-declined.jsonl")]
    assert main(["check", *files, "--workflow", "examples.order_demo:place_order"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 2


def test_check_shows_the_divergence_of_a_changed_workflow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    history = str(HISTORIES / "nondeterministic.jsonl")
    assert main(["check", history, "--workflow", "tests.histories.workflows:changed_flow"]) == 1
    out = capsys.readouterr().out
    expected = (HISTORIES / "nondeterministic.expected.txt").read_text().strip()
    assert f"DIVERGES  {history}" in out
    # the side-by-side body of the message; its first line names the history differently
    assert expected.split("\n", 1)[1] in out


def test_check_refuses_what_is_not_a_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    history = str(HISTORIES / "steps.jsonl")
    assert main(["check", history, "--workflow", "examples.order_demo:charge_card"]) == 1
    assert "is not a @workflow function" in capsys.readouterr().err
    assert main(["check", history, "--workflow", "examples.order_demo"]) == 1
    assert "MODULE:NAME" in capsys.readouterr().err
