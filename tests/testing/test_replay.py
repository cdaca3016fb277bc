"""replay(): a recorded history against the current code; export_history / load_history."""

from __future__ import annotations

from pathlib import Path

import pytest

from worldflow import (
    InvalidEventError,
    NondeterminismError,
    create_hook,
    sleep,
    step,
    workflow,
)
from worldflow.testing import (
    ReplayDivergenceError,
    export_history,
    fetch_history,
    load_history,
    memory_engine,
    replay,
    resume_hook_when_waiting,
    wait_until_blocked,
)
from worldflow.worlds import AnyEvent, RunStatus

pytestmark = pytest.mark.anyio

NAME = "testing.fulfil"


@step(name="testing.pick")
async def pick(item: str) -> str:
    return f"picked {item}"


@step(name="testing.pack")
async def pack(item: str, box: int) -> str:
    return f"packed {item} in box {box}"


@step(name="testing.audit")
async def audit(item: str) -> None:
    return None


@workflow(name=NAME)
async def fulfil(item: str) -> list[str]:
    done = [await pick(item), await pack(item, 3)]
    await sleep("1h")
    approved = await create_hook(token=f"ok:{item}")
    return [*done, f"approved={approved}"]


async def record(item: str, *, finish: bool = True) -> list[AnyEvent]:
    async with memory_engine([fulfil]) as engine:
        run = await engine.start(fulfil, item, run_id=f"run-{item}")
        if finish:
            await resume_hook_when_waiting(run, f"ok:{item}", True)
            await run.result(timeout=7200)
        else:
            await wait_until_blocked(run, hook=f"ok:{item}")
        return await fetch_history(engine.world, run.run_id)


async def test_the_unchanged_code_replays_a_finished_history() -> None:
    events = await record("book")
    result = replay(events, fulfil)
    assert result.status is RunStatus.COMPLETED
    assert result.finished
    assert result.output == ["picked book", "packed book in box 3", "approved=True"]
    assert result.commands == []
    assert result.events == len(events)


async def test_a_history_still_in_flight_says_what_the_code_waits_for() -> None:
    events = await record("lamp", finish=False)
    result = replay(events, fulfil)
    assert result.status is RunStatus.RUNNING
    assert not result.finished
    assert result.blocked_on == ["hook ok:lamp"]


async def test_export_and_load_round_trip(tmp_path: Path) -> None:
    async with memory_engine([fulfil]) as engine:
        run = await engine.start(fulfil, "pen", run_id="run-pen")
        await resume_hook_when_waiting(run, "ok:pen", False)
        await run.result(timeout=7200)
        path = tmp_path / "pen.jsonl"
        count = await export_history(engine.world, run.run_id, path)
        events = await fetch_history(engine.world, run.run_id)
    assert count == len(events) == len(path.read_text().splitlines())
    assert load_history(path) == events
    assert replay(path, fulfil).output[-1] == "approved=False"


async def test_an_inserted_step_is_reported_side_by_side(tmp_path: Path) -> None:
    path = tmp_path / "book.jsonl"
    path.write_bytes(b"".join(_lines(await record("book"))))

    @workflow(name=NAME)
    async def fulfil_v2(item: str) -> list[str]:
        done = [await pick(item)]
        await audit(item)  # new in v2
        done.append(await pack(item, 3))
        await sleep("1h")
        approved = await create_hook(token=f"ok:{item}")
        return [*done, f"approved={approved}"]

    with pytest.raises(ReplayDivergenceError) as caught:
        replay(path, fulfil_v2)
    error = caught.value
    assert isinstance(error, NondeterminismError)
    message = str(error)
    assert message.startswith(f"Replay of history {path} of run run-book (workflow '{NAME}')")
    assert 'step \'testing.pick\' with input {"item":"book"}' in message
    row = next(line for line in message.splitlines() if "<-- differs" in line)
    assert 'step \'testing.pack\' with input {"item":"book","box":3}' in row
    assert 'step \'testing.audit\' with input {"item":"book"}' in row
    assert "Likely cause: a step was inserted, removed, renamed or reordered" in message
    divergence = error.divergence
    assert divergence.recorded.startswith("step 'testing.pack'")
    assert divergence.current.startswith("step 'testing.audit'")
    assert [r[0] for r in divergence.rows] == [e.seq for e in _creations(path)][:2]


async def test_a_changed_result_is_a_divergence_too() -> None:
    events = await record("cup")

    @workflow(name=NAME)
    async def fulfil_v3(item: str) -> list[str]:
        done = [await pick(item), await pack(item, 3)]
        await sleep("1h")
        approved = await create_hook(token=f"ok:{item}")
        return [*done, f"approved: {approved}"]  # same operations, another result

    with pytest.raises(ReplayDivergenceError, match="computes another result") as caught:
        replay(events, fulfil_v3)
    assert "approved=True" in caught.value.divergence.recorded
    assert "approved: True" in caught.value.divergence.current


async def test_a_changed_input_is_named() -> None:
    events = await record("mug")

    @workflow(name=NAME)
    async def fulfil_v4(item: str) -> list[str]:
        done = [await pick(item), await pack(item, 4)]  # box 3 -> 4
        await sleep("1h")
        approved = await create_hook(token=f"ok:{item}")
        return [*done, f"approved={approved}"]

    with pytest.raises(NondeterminismError, match=r"(?s)recorded: step 'testing.pack'.*box\":3"):
        replay(events, fulfil_v4)


async def test_bad_histories_are_refused(tmp_path: Path) -> None:
    events = await record("hat")

    @workflow(name="testing.other")
    async def other(item: str) -> None:
        return None

    with pytest.raises(ValueError, match=r"is a run of workflow 'testing\.fulfil', not"):
        replay(events, other)
    with pytest.raises(ValueError, match="empty"):
        replay([], fulfil)
    with pytest.raises(InvalidEventError, match="does not start with run_created"):
        replay(events[1:], fulfil)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join(_lines(events[:2])) + b'{"type":"nope"}\n')
    with pytest.raises(InvalidEventError, match=r"broken\.jsonl, line 3"):
        load_history(broken)
    with pytest.raises(TypeError, match="@workflow"):
        replay(events, pick)


def _lines(events: list[AnyEvent]) -> list[bytes]:
    from worldflow.worlds import encode_event

    return [encode_event(e) + b"\n" for e in events]


def _creations(path: Path) -> list[AnyEvent]:
    return [e for e in load_history(path) if e.type == "step_created"]
