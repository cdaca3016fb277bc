"""Body-only primitives outside a body, the replay-silent logger, child workflows, streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tests.engine.history import History
from worldflow import (
    DeterminismViolationError,
    NotInWorkflowError,
    WorkflowCancelledError,
    WorkflowFailedError,
    _serde,
    create_hook,
    create_webhook,
    get_state,
    get_workflow_metadata,
    is_replaying,
    logger,
    now,
    random,
    set_state,
    sleep,
    step,
    uuid4,
    wait_for_event,
    workflow,
)
from worldflow._primitives import WorkflowStreamHandle, workflow_writable
from worldflow._replay.child_contract import START_CHILD_STEP, child_outcome, child_result
from worldflow._replay.current import in_workflow
from worldflow.worlds import (
    ErrorInfo,
    HookCreated,
    HookReceived,
    RunStatus,
    StepCreated,
    WorkflowRun,
)


@pytest.mark.parametrize(
    "use",
    [
        lambda: sleep(1),
        lambda: create_hook(),
        lambda: create_webhook(),
        lambda: wait_for_event("x"),
        get_state,
        lambda: set_state(1),
        now,
        random,
        uuid4,
        is_replaying,
        workflow_writable,
    ],
)
def test_body_only_primitives_refuse_outside_a_body(use: Callable[[], Any]) -> None:
    with pytest.raises(NotInWorkflowError, match="only be used inside a @workflow function"):
        use()


def test_workflow_metadata_outside_a_body_and_a_step_is_refused() -> None:
    with pytest.raises(NotInWorkflowError, match="or call it in a step"):
        get_workflow_metadata()


@pytest.mark.anyio
async def test_primitives_refuse_on_the_host_loop_too() -> None:
    assert not in_workflow()
    with pytest.raises(NotInWorkflowError, match=r"worldflow\.sleep\(\)"):
        await sleep(1)


@step
async def work(x: int) -> int:
    return x


def test_logger_is_silent_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    @workflow
    async def chatty() -> bool:
        logger.info("before step, replaying=%s", is_replaying())
        await work(1)
        logger.info("after step, replaying=%s", is_replaying())
        return True

    with caplog.at_level(logging.INFO, logger="worldflow.workflow"):
        h = History(chatty, check=False)
        h.run_steps()
        live = [r.getMessage() for r in caplog.records]
        caplog.clear()
        _, progress = h.replay()
        assert progress.finished
        replayed = [r.getMessage() for r in caplog.records]
    assert live == ["before step, replaying=False", "after step, replaying=False"]
    assert replayed == []
    assert h.result is True
    logger.info("outside a body the logger logs normally")


def test_logger_records_carry_the_run(caplog: pytest.LogCaptureFixture) -> None:
    @workflow
    async def tagged() -> None:
        logger.warning("hello")

    with caplog.at_level(logging.INFO, logger="worldflow.workflow"):
        h = History(tagged, check=False)
    [record] = caplog.records
    assert record.run_id == h.run_id  # type: ignore[attr-defined]
    assert record.workflow_name == tagged.name  # type: ignore[attr-defined]


@workflow(name="child")
async def child(n: int) -> int:
    return n * 2


def test_child_workflow_body_side() -> None:
    @workflow(name="parent")
    async def parent() -> list[Any]:
        a = await child(21)
        try:
            await child(n=0)
        except WorkflowFailedError as exc:
            b: Any = [exc.run_id, exc.error_name, str(exc)]
        try:
            await child(1)
        except WorkflowCancelledError as exc:
            c = str(exc)
        return [a, b, c]

    h = History(parent)
    hook, start = h.events[-2:]
    assert isinstance(hook, HookCreated)
    assert isinstance(start, StepCreated)
    assert start.step_name == START_CHILD_STEP
    child_id = f"{h.run_id}-{start.correlation_id}"
    assert hook.token == f"worldflow:child:{child_id}"
    assert _serde.decode(start.input) == {
        "workflow_name": "child",
        "run_id": child_id,
        "input": {"n": 21},
    }
    assert h.progress.blocked_on == [f"child workflow child (run {child_id}): starting"]
    h.complete(start.correlation_id, child_id)
    assert h.progress.blocked_on == [f"child workflow child (run {child_id})"]
    outcome = {"status": "completed", "output": 42}
    h.send(
        HookReceived(
            run_id=h.run_id, correlation_id=hook.correlation_id, payload=_serde.encode(outcome)
        )
    )
    assert "hook_disposed" in h.types()
    for payload in (
        {"status": "failed", "error": {"name": "ValueError", "message": "zero"}},
        {"status": "cancelled", "reason": "user"},
    ):
        start_id = h.step_id(START_CHILD_STEP)
        token = f"worldflow:child:{h.run_id}-{start_id}"
        # the outcome may arrive before the start step's result: it waits in the hook
        h.resume_hook(token, payload)
        h.complete(start_id, "started")
    a, b, c = h.result
    assert a == 42
    assert b[1] == "ValueError"
    assert "failed: ValueError: zero" in b[2]
    assert "was cancelled: user" in c


def test_child_outcome_from_a_run_view() -> None:
    from datetime import UTC, datetime

    t = datetime(2024, 1, 1, tzinfo=UTC)
    base = WorkflowRun(
        run_id="c1",
        workflow_name="child",
        status=RunStatus.COMPLETED,
        input=_serde.encode({}),
        created_at=t,
        updated_at=t,
        output=_serde.encode([1, 2]),
    )
    completed = child_outcome(base)
    # The JSON is the shape older logs carry in a hook_received payload.
    assert msgspec.json.decode(msgspec.json.encode(completed)) == {
        "status": "completed",
        "output": [1, 2],
    }
    assert child_result("child", "c1", completed) == [1, 2]
    assert child_result("child", "c1", msgspec.Raw(msgspec.json.encode(completed))) == [1, 2]
    failed = child_outcome(
        WorkflowRun(
            **{
                **{f: getattr(base, f) for f in base.__struct_fields__},
                "status": RunStatus.FAILED,
                "error": ErrorInfo(name="KeyError", message="k", code=None),
            }
        )
    )
    with pytest.raises(WorkflowFailedError, match="KeyError: k"):
        child_result("child", "c1", failed)
    running = WorkflowRun(
        **{**{f: getattr(base, f) for f in base.__struct_fields__}, "status": RunStatus.RUNNING}
    )
    with pytest.raises(ValueError, match="not terminal"):
        child_outcome(running)


def test_stream_handle_is_made_in_the_body_and_refuses_to_write_there() -> None:
    @step
    async def take(handle: WorkflowStreamHandle) -> str | None:
        return handle.namespace

    @workflow
    async def streaming() -> list[Any]:
        handle = workflow_writable("tokens")
        try:
            await handle.write("x")
        except DeterminismViolationError as exc:
            refused = str(exc)
        return [await take(handle), refused]

    h = History(streaming)
    h.run_steps()
    namespace, refused = h.result
    assert namespace == "tokens"
    assert "pass this handle to a step" in refused


def test_hook_object_api() -> None:
    @workflow
    async def hooks() -> list[Any]:
        hook = create_hook(token="api", metadata={"a": 1})
        first = asyncio.ensure_future(hook.receive())
        await asyncio.sleep(0)
        return [repr(hook), hook.metadata, hook.id.startswith("hook_"), await first]

    h = History(hooks)
    h.resume_hook("api", "p")
    assert h.result == ["<hook 'api'>", {"a": 1}, True, "p"]
