"""Nondeterminism: a log replayed against changed code stalls the run with a clear message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.history import History
from worldflow import WorkflowFunction, create_hook, get_state, set_state, sleep, step, workflow
from worldflow._replay.instance import Progress
from worldflow.worlds import HookReceived, StepCompleted

NAME = "orders"


@step(name="reserve")
async def reserve(item: str) -> str:
    return f"reserved {item}"


@step(name="charge")
async def charge(cents: int) -> str:
    return f"charged {cents}"


@step(name="notify")
async def notify(who: str) -> str:
    return f"told {who}"


@workflow(name=NAME)
async def original(item: str) -> list[str]:
    return [await reserve(item), await charge(1999)]


def recorded() -> History:
    """A run of the original code that has reserved and charged, not finished."""

    @workflow(name=NAME)
    async def waiting(item: str) -> list[str]:
        done = [await reserve(item), await charge(1999)]
        await create_hook(token="never")
        return done

    h = History(waiting, "book")
    h.run_steps()
    assert h.progress.blocked_on == ["hook never"]
    return h


def replay_with(h: History, changed: WorkflowFunction[..., Any]) -> Progress:
    """Replay the recorded log against ``changed`` and return the final progress."""
    from worldflow._replay.instance import WorkflowInstance

    instance = WorkflowInstance(changed.definition, h.run_view(), registry=h.registry)
    try:
        return instance.feed(h.events)
    finally:
        instance.close()


def failure(progress: Progress) -> str:
    """The divergence's message: the instance stalls (owes nothing, fails nothing)."""
    assert progress.finished
    assert progress.stalled
    assert progress.commands == []
    assert progress.error is not None
    return progress.error


def test_the_unchanged_code_replays_cleanly() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def same(item: str) -> list[str]:
        done = [await reserve(item), await charge(1999)]
        await create_hook(token="never")
        return done

    progress = replay_with(h, same)
    assert progress.commands == []
    assert progress.blocked_on == ["hook never"]


def test_renamed_step() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def renamed(item: str) -> list[str]:
        return [await reserve(item), await notify("ops")]

    message = failure(replay_with(h, renamed))
    assert f"Nondeterminism in run {h.run_id} (workflow 'orders')" in message
    assert "operation #2" in message
    seq = next(e.seq for e in h.events if getattr(e, "step_name", None) == "charge")
    assert f"event seq {seq}" in message
    assert "recorded: step 'charge' with input {\"cents\":1999}" in message
    assert 'current:  step \'notify\' with input {"who":"ops"}' in message
    assert "inserted, removed, renamed or reordered" in message


def test_changed_input() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def cheaper(item: str) -> list[str]:
        return [await reserve(item), await charge(999)]

    message = failure(replay_with(h, cheaper))
    assert "recorded: step 'charge' with input {\"cents\":1999}" in message
    assert "current:  step 'charge' with input {\"cents\":999}" in message
    assert "arguments are computed differently" in message


def test_inserted_step() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def inserted(item: str) -> list[str]:
        await notify("first")
        return [await reserve(item), await charge(1999)]

    message = failure(replay_with(h, inserted))
    assert "operation #1" in message
    assert "recorded: step 'reserve'" in message
    assert "current:  step 'notify'" in message


def test_removed_step() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def removed(item: str) -> list[str]:
        return [await charge(1999)]

    message = failure(replay_with(h, removed))
    assert "recorded: step 'reserve'" in message
    assert "current:  step 'charge'" in message


def test_removed_last_operation_is_an_operation_the_code_never_started() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def shorter(item: str) -> list[str]:
        first = await reserve(item)
        await create_hook(token="never")
        return [first]

    message = failure(replay_with(h, shorter))
    # Operation #2 is now the hook; the log has the step 'charge' there.
    assert "operation #2" in message
    assert "recorded: step 'charge'" in message
    assert "current:  hook with token 'never'" in message
    assert "replaced by another kind" in message


def test_operation_missing_at_this_point() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def branches(item: str) -> list[str]:
        first = await reserve(item)
        if first.startswith("reserved"):  # the new code waits here instead
            await create_hook(token="other")
        return [first]

    h.events = h.events[:6]  # up to step_created 'charge' (seq 6)
    message = failure(replay_with(h, branches))
    assert "event seq 6, operation #2" in message
    assert "recorded: step 'charge'" in message
    assert "current:  hook with token 'other'" in message


def test_code_that_ends_earlier_than_the_log() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def stops(item: str) -> list[str]:
        return [await reserve(item)]

    message = failure(replay_with(h, stops))
    assert "recorded: step 'charge'" in message
    assert "current:  nothing: the workflow body has already ended" in message
    assert "operation #2" in message
    assert "no longer starts this operation" in message


def test_kind_change_step_to_sleep() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def naps(item: str) -> list[str]:
        await sleep("1h")
        return [await reserve(item), await charge(1999)]

    message = failure(replay_with(h, naps))
    assert "recorded: step 'reserve'" in message
    assert "current:  sleep until" in message
    assert "replaced by another kind" in message


def test_changed_hook_token() -> None:
    h = recorded()

    @workflow(name=NAME)
    async def other_token(item: str) -> list[str]:
        done = [await reserve(item), await charge(1999)]
        await create_hook(token="elsewhere")
        return done

    message = failure(replay_with(h, other_token))
    assert "recorded: hook with token 'never'" in message
    assert "current:  hook with token 'elsewhere'" in message


def test_changed_state_update() -> None:
    @workflow(name="stateful")
    async def v1() -> Any:
        set_state({"n": 1})
        return await create_hook(token="t")

    @workflow(name="stateful")
    async def v2() -> Any:
        set_state({"n": 2})
        return await create_hook(token="t")

    h = History(v1)
    message = failure(replay_with(h, v2))
    assert 'recorded: set_state({"n":1})' in message
    assert 'current:  set_state({"n":2})' in message
    assert get_state is not None


def test_nondeterminism_found_on_the_live_path_stalls_the_run() -> None:
    """A step result for an operation the body never started (a corrupt log)."""
    h = recorded()
    progress = h.feed(
        h.append(StepCompleted(run_id=h.run_id, correlation_id="step_bogus", result=b"1"))  # type: ignore[arg-type]
    )
    message = failure(progress)
    assert "log has events for an operation this run never started" in message
    h.settle()
    assert "run_failed" not in h.types()
    assert h.progress.commands == []
    # Later events are consumed silently: the instance is done, nothing more is owed.
    corr = h.hook_id("never")
    h.feed(h.append(HookReceived(run_id=h.run_id, correlation_id=corr, payload=b"2")))  # type: ignore[arg-type]
    assert h.progress.commands == []
    assert h.progress.finished


def test_code_that_goes_on_where_the_recorded_run_returned() -> None:
    h = History(original, "book")
    h.run_steps()
    assert h.result == ["reserved book", "charged 1999"]

    @workflow(name=NAME)
    async def longer(item: str) -> list[str]:
        done = [await reserve(item), await charge(1999)]
        await sleep("1h")
        return done

    message = failure(replay_with(h, longer))
    assert 'recorded: the workflow returned ["reserved book","charged 1999"]' in message
    assert "current:  nothing at this point" in message
    assert "waiting on sleep until" in message


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_nondeterminism_is_the_same_in_any_chunking(chunk: int) -> None:
    h = recorded()

    @workflow(name=NAME)
    async def renamed(item: str) -> list[str]:
        return [await reserve(item), await notify("ops")]

    from worldflow._replay.instance import WorkflowInstance

    whole = replay_with(h, renamed)
    instance = WorkflowInstance(renamed.definition, h.run_view(), registry=h.registry)
    progress = instance.feed([])
    for start in range(0, len(h.events), chunk):
        progress = instance.feed(h.events[start : start + chunk])
    instance.close()
    assert failure(progress) == failure(whole)
