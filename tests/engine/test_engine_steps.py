"""Step execution in the engine: retries and backoff, fatal and retryable errors, timeouts,
concurrency limits, sync steps, step metadata, cancellation of a running step, unknown steps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.engine.runtime import WAIT, assert_results_once, log_of, running
from worldflow import (
    Backoff,
    FatalError,
    RetryableError,
    StepFailedError,
    StepMetadata,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowFunction,
    WorkflowMetadata,
    get_step_metadata,
    get_workflow_metadata,
    step,
    workflow,
)
from worldflow._runtime.step_job import StepJob
from worldflow.worlds import (
    NULL,
    MemoryWorld,
    RunCreated,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepRetrying,
    StepStarted,
    StepStatus,
)
from worldflow.worlds._clock import SystemClock

pytestmark = pytest.mark.anyio

CALLS: dict[str, int] = {}
SEEN: list[StepMetadata] = []


def called(key: str) -> int:
    CALLS[key] = CALLS.get(key, 0) + 1
    return CALLS[key]


@step(max_retries=3, backoff=Backoff(initial=timedelta(milliseconds=40), factor=2))
async def flaky(key: str, fail_times: int) -> str:
    """Fail the first ``fail_times`` calls for ``key``."""
    n = called(key)
    SEEN.append(get_step_metadata())
    if n <= fail_times:
        raise ConnectionError(f"attempt {n} failed")
    return f"ok after {n}"


@step(max_retries=5)
async def fatal(key: str) -> None:
    called(key)
    raise FatalError("card declined")


@step(max_retries=2)
async def retry_later(key: str) -> int:
    """Ask to be retried 50 ms later, once."""
    n = called(key)
    if n == 1:
        raise RetryableError("rate limited", retry_after="50ms")
    return n


@step(max_retries=1, timeout="50ms", backoff="1ms")
async def slow_first(key: str) -> int:
    """Hang on the first attempt (timed out), answer on the second."""
    if called(key) == 1:
        await asyncio.Event().wait()
    return 7


ACTIVE = {"now": 0, "peak": 0}


@step(concurrency=2)
async def limited(i: int) -> int:
    ACTIVE["now"] += 1
    ACTIVE["peak"] = max(ACTIVE["peak"], ACTIVE["now"])
    try:
        for _ in range(5):
            await asyncio.sleep(0)  # let the others try to get in
    finally:
        ACTIVE["now"] -= 1
    return i


@step
def blocking(x: int) -> tuple[int, bool, str]:
    """A sync step: runs in a worker thread with its metadata available."""
    meta = get_step_metadata()
    return x + 1, threading.current_thread() is not threading.main_thread(), meta.step_name


SIGNALS: dict[str, asyncio.Event] = {}
OUTCOMES: list[str] = []


@step
async def hangs(key: str) -> None:
    SIGNALS["started"].set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        OUTCOMES.append(f"{key} cancelled")
        SIGNALS["cancelled"].set()
        raise


@workflow
async def one_flaky(key: str, fail_times: int) -> str:
    return await flaky(key, fail_times)


@workflow
async def catch_failure(key: str, fail_times: int) -> str:
    try:
        return await flaky(key, fail_times)
    except StepFailedError as exc:
        return f"{exc.error_name}: {exc.error_message}"


@workflow
async def one_fatal(key: str) -> str:
    try:
        await fatal(key)
    except StepFailedError as exc:
        return exc.error_name
    return "no error"


@workflow
async def one_retry_later(key: str) -> int:
    return await retry_later(key)


@workflow
async def one_slow(key: str) -> int:
    return await slow_first(key)


@workflow
async def many_limited(n: int) -> list[int]:
    return list(await asyncio.gather(*(limited(i) for i in range(n))))


@workflow
async def one_blocking(x: int) -> tuple[int, bool, str]:
    return await blocking(x)


@workflow
async def one_hang(key: str) -> None:
    await hangs(key)


@workflow
async def metadata_probe() -> dict[str, object]:
    first = await probe_metadata()
    return first


@step
async def probe_metadata() -> dict[str, object]:
    meta = get_step_metadata()
    run = get_workflow_metadata()
    return {
        "step_id": meta.step_id,
        "attempt": meta.attempt,
        "run_id": meta.run_id,
        "workflow": meta.workflow_name,
        "run_workflow": run.workflow_name,
        "resource": run.resource_id,
    }


WORKFLOWS: list[WorkflowFunction[..., Any]] = [
    one_flaky,
    catch_failure,
    one_fatal,
    one_retry_later,
    one_slow,
    many_limited,
    one_blocking,
    one_hang,
    metadata_probe,
]


@pytest.fixture
async def world() -> AsyncIterator[MemoryWorld]:
    CALLS.clear()
    SEEN.clear()
    world = MemoryWorld()
    yield world
    await world.aclose()


async def test_a_failing_step_is_retried_with_backoff(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_flaky, "k", 2)
        assert await run.result(timeout=WAIT) == "ok after 3"
        log = await log_of(world, run.run_id)
        kinds = [e.type for e in log if e.type.startswith("step_")]
        assert kinds == [
            "step_created",
            "step_started",
            "step_retrying",
            "step_started",
            "step_retrying",
            "step_started",
            "step_completed",
        ]
        retries = [e for e in log if isinstance(e, StepRetrying)]
        assert [r.error.name for r in retries] == ["ConnectionError", "ConnectionError"]
        assert retries[0].error.message == "attempt 1 failed"
        # Backoff: 40 ms, then 80 ms, after each failed attempt (the engine reads its clock
        # a moment before the world stamps the event).
        for retry, delay in zip(retries, (40, 80), strict=True):
            assert retry.retry_after is not None
            waited = retry.retry_after - retry.created_at
            assert timedelta(milliseconds=delay - 20) < waited <= timedelta(milliseconds=delay)
        starts = [e for e in log if e.type == "step_started"]
        for retry, start in zip(retries, starts[1:], strict=True):
            assert retry.retry_after is not None
            assert start.created_at >= retry.retry_after
        assert [m.attempt for m in SEEN] == [1, 2, 3]
        assert len({m.step_id for m in SEEN}) == 1  # one id across attempts
        await assert_results_once(world, run.run_id)


async def test_retries_used_up_fail_the_step(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(catch_failure, "k", 10)
        assert await run.result(timeout=WAIT) == "ConnectionError: attempt 4 failed"
        assert CALLS["k"] == 4  # max_retries=3: four attempts
        steps = (await world.list_steps(run.run_id)).items
        assert steps[0].status is StepStatus.FAILED
        assert steps[0].attempt == 4


async def test_an_uncaught_step_failure_fails_the_run(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_flaky, "k", 10)
        with pytest.raises(WorkflowFailedError, match="ConnectionError") as failed:
            await run.result(timeout=WAIT)
        assert failed.value.error_name == "ConnectionError"  # the step's own error


async def test_fatal_errors_are_never_retried(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_fatal, "f")
        assert await run.result(timeout=WAIT) == "FatalError"
        assert CALLS["f"] == 1
        kinds = [e.type for e in await log_of(world, run.run_id) if e.type.startswith("step_")]
        assert kinds == ["step_created", "step_started", "step_failed"]


async def test_retryable_error_retry_after_is_honoured(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_retry_later, "r")
        assert await run.result(timeout=WAIT) == 2
        log = await log_of(world, run.run_id)
        retry = next(e for e in log if isinstance(e, StepRetrying))
        assert retry.retry_after is not None
        waited = retry.retry_after - retry.created_at
        assert timedelta(milliseconds=30) < waited <= timedelta(milliseconds=50)
        second_start = [e for e in log if e.type == "step_started"][1]
        assert second_start.created_at >= retry.retry_after


async def test_a_timed_out_attempt_is_a_retryable_failure(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_slow, "s")
        assert await run.result(timeout=WAIT) == 7
        retry = next(e for e in await log_of(world, run.run_id) if isinstance(e, StepRetrying))
        assert retry.error.name == "TimeoutError"
        assert "timed out after 0.05s" in retry.error.message


async def test_the_concurrency_limit_holds_across_a_fan_out(world: MemoryWorld) -> None:
    ACTIVE.update(now=0, peak=0)
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(many_limited, 8)
        assert await run.result(timeout=WAIT) == list(range(8))
    assert ACTIVE["peak"] == 2


async def test_the_engine_wide_step_limit(world: MemoryWorld) -> None:
    ACTIVE.update(now=0, peak=0)
    async with running(world, WORKFLOWS, max_concurrent_steps=1) as engine:
        run = await engine.start(many_limited, 4)
        assert await run.result(timeout=WAIT) == list(range(4))
    assert ACTIVE["peak"] == 1


async def test_sync_steps_run_in_a_worker_thread(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_blocking, 1)
        assert await run.result(timeout=WAIT) == (2, True, blocking.name)


async def test_step_and_workflow_metadata_inside_a_step(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(metadata_probe, resource_id="tenant-1")
        out = await run.result(timeout=WAIT)
        step_view = (await world.list_steps(run.run_id)).items[0]
        assert out == {
            "step_id": step_view.step_id,
            "attempt": 1,
            "run_id": run.run_id,
            "workflow": metadata_probe.name,
            "run_workflow": metadata_probe.name,
            "resource": "tenant-1",
        }


async def test_cancel_cancels_a_running_step_without_recording_a_failure(
    world: MemoryWorld,
) -> None:
    SIGNALS.update(started=asyncio.Event(), cancelled=asyncio.Event())
    OUTCOMES.clear()
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(one_hang, "h")
        await asyncio.wait_for(SIGNALS["started"].wait(), WAIT)
        await engine.cancel(run.run_id, "stop")
        with pytest.raises(WorkflowCancelledError):
            await run.result(timeout=WAIT)
        await asyncio.wait_for(SIGNALS["cancelled"].wait(), WAIT)
        assert OUTCOMES == ["h cancelled"]
        assert not engine.driver.slot(run.run_id).jobs
    kinds = [e.type for e in await log_of(world, run.run_id)]
    assert "step_failed" not in kinds
    assert "step_retrying" not in kinds
    assert kinds[-1] == "run_cancelled"


async def _prepare_unknown_step(world: MemoryWorld) -> None:
    await world.append(
        "r-unknown",
        [
            RunCreated(run_id="r-unknown", workflow_name="not:served", input=NULL),
            RunStarted(run_id="r-unknown"),
            StepCreated(
                run_id="r-unknown",
                correlation_id="step_1",
                step_name="no.such:step",
                input=NULL,
            ),
        ],
    )


async def test_an_unknown_step_name_fails_the_step(world: MemoryWorld) -> None:
    await _prepare_unknown_step(world)
    async with running(world, WORKFLOWS) as engine:
        job = StepJob(
            run_id="r-unknown",
            step_id="step_1",
            step_name="no.such:step",
            input=NULL,
            workflow=WorkflowMetadata(
                workflow_name="not:served", run_id="r-unknown", created_at=datetime.now()
            ),
        )
        await engine.driver.steps.run(job)
    step_view = await world.get_step("r-unknown", "step_1")
    assert step_view.status is StepStatus.FAILED
    assert step_view.error is not None
    assert step_view.error.name == "StepNotRegisteredError"
    assert "no.such:step" in step_view.error.message


async def test_a_result_recorded_elsewhere_first_wins(world: MemoryWorld) -> None:
    await _prepare_unknown_step(world)
    await world.append("r-unknown", [StepStarted(run_id="r-unknown", correlation_id="step_1")])
    await world.append(
        "r-unknown",
        [StepCompleted(run_id="r-unknown", correlation_id="step_1", result=NULL)],
    )
    async with running(world, WORKFLOWS) as engine:
        job = StepJob(
            run_id="r-unknown",
            step_id="step_1",
            step_name=flaky.name,
            input=NULL,
            workflow=WorkflowMetadata(
                workflow_name="not:served", run_id="r-unknown", created_at=datetime.now()
            ),
        )
        await engine.driver.steps.run(job)  # step_started conflicts: nothing runs
    assert CALLS == {}
    kinds = [e.type for e in await log_of(world, "r-unknown")]
    assert kinds.count("step_completed") == 1
    assert "step_failed" not in kinds


class FastClock(SystemClock):
    """Real time, but every wait is a thousand times shorter (timeouts, backoff, timers)."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / 1000)


@step(max_retries=1, timeout="30s", backoff="20s")
async def stubborn(key: str) -> str:
    """Hang the first time, swallowing the engine's cancellation; answer the second time."""
    if called(key) == 1:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "swallowed"  # a timed-out attempt stays a failure even so
    return "second"


@workflow
async def one_stubborn(key: str) -> str:
    return await stubborn(key)


async def test_step_timeouts_and_backoff_run_on_the_engine_clock(world: MemoryWorld) -> None:
    async with running(world, [one_stubborn], clock=FastClock()) as engine:
        run = await engine.start(one_stubborn, "st")
        async with asyncio.timeout(WAIT):  # result(timeout=) would use the fast clock too
            assert await run.result() == "second"  # 30 s + 20 s on the fast clock
    retry = next(e for e in await log_of(world, run.run_id) if isinstance(e, StepRetrying))
    assert retry.error.name == "TimeoutError"
    assert "timed out after 30s" in retry.error.message
