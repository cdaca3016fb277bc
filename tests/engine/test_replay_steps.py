"""Replay of step calls: live path and replay path give the same commands and outcome."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.engine.history import History
from worldflow import SerializationError, StepFailedError, step, workflow
from worldflow.worlds import StepCreated


@dataclasses.dataclass(frozen=True)
class Receipt:
    order_id: str
    cents: int


@step
async def charge(order_id: str, cents: int) -> Receipt:
    return Receipt(order_id, cents)


@step
async def double(x: int) -> int:
    return 2 * x


@step(name="tests.sync_add")
def sync_add(a: int, b: int = 1) -> int:
    return a + b


@workflow
async def checkout(order_id: str) -> dict[str, object]:
    receipt = await charge(order_id, 1999)
    doubled = await double(receipt.cents)
    return {"receipt": receipt, "doubled": doubled}


def test_sequential_steps_live_and_replay() -> None:
    h = History(checkout, "o-1")
    assert h.progress.blocked_on == ["step tests.engine.test_replay_steps:charge"]
    first = h.events[-1]
    assert isinstance(first, StepCreated)
    assert first.step_name == "tests.engine.test_replay_steps:charge"
    assert bytes(first.input) == b'{"order_id":"o-1","cents":1999}'
    h.run_steps()
    assert h.progress.finished
    assert h.result == {"receipt": Receipt("o-1", 1999), "doubled": 3998}
    assert h.types() == [
        "run_created",
        "run_started",
        "step_created",
        "step_started",
        "step_completed",
        "step_created",
        "step_started",
        "step_completed",
        "run_completed",
    ]


def test_step_input_is_bound_arguments() -> None:
    @workflow
    async def both() -> int:
        a = await double(21)
        b = await double(x=21)
        return a + b

    h = History(both)
    h.run_steps()
    inputs = [bytes(e.input) for e in h.events if isinstance(e, StepCreated)]
    assert inputs == [b'{"x":21}', b'{"x":21}']
    assert h.result == 84


def test_gather_ids_follow_call_order_and_results_keep_argument_order() -> None:
    @workflow
    async def fan_out() -> list[int]:
        return list(await asyncio.gather(double(1), double(2), double(3)))

    h = History(fan_out)
    ids = h.progress.pending_steps
    assert len(ids) == 3
    assert ids == sorted(ids), "correlation ids sort in call order"
    inputs = [bytes(h.step_created(i).input) for i in ids]
    assert inputs == [b'{"x":1}', b'{"x":2}', b'{"x":3}']
    for corr, value in zip(reversed(ids), (30, 20, 10), strict=True):
        h.complete(corr, value)
    assert h.result == [10, 20, 30]


def test_task_group_and_create_task() -> None:
    @workflow
    async def grouped() -> list[int]:
        async with asyncio.TaskGroup() as tg:
            a = tg.create_task(double(1))
            b = tg.create_task(double(2))
        c = asyncio.get_running_loop().create_task(double(a.result() + b.result()))
        return [a.result(), b.result(), await c]

    h = History(grouped)
    h.run_steps()
    assert h.result == [2, 4, 12]


def test_failed_step_raises_step_failed_error_the_body_can_catch() -> None:
    @workflow
    async def careful(order_id: str) -> str:
        try:
            await charge(order_id, 5)
        except StepFailedError as exc:
            return f"{exc.step_name}|{exc.error_name}|{exc.error_code}|{exc.error_message}"
        return "charged"

    h = History(careful, "o-2")
    h.fail("charge", error="FatalError", message="card declined", code="fatal")
    assert h.result == "tests.engine.test_replay_steps:charge|FatalError|fatal|card declined"


def test_uncaught_step_failure_fails_the_run() -> None:
    h = History(checkout, "o-3")
    h.fail("charge", error="KeyError", message="'card'")
    error = h.error
    assert error.name == "KeyError"  # the original error; the code says it came by a step
    assert error.code == "step_failed"
    assert "KeyError" in error.message
    assert "charge" in error.message
    assert error.stack
    assert "StepFailedError" in error.stack


def test_sync_step_is_a_durable_operation_in_a_body() -> None:
    @workflow
    async def adds() -> int:
        return await sync_add(1, b=2) + await sync_add(a=10)

    h = History(adds)
    names = [e.step_name for e in h.events if isinstance(e, StepCreated)]
    assert names == ["tests.sync_add"]
    h.run_steps()
    assert h.result == 14


def test_results_are_passed_by_value() -> None:
    @step
    async def make() -> dict[str, list[int]]:
        return {"xs": [1, 2]}

    @workflow
    async def mutate() -> list[object]:
        first = await make()
        first["xs"].append(3)
        return [first, await make()]

    h = History(mutate)
    h.run_steps()
    assert h.result == [{"xs": [1, 2, 3]}, {"xs": [1, 2]}]


def test_unencodable_argument_is_a_catchable_error_in_the_body() -> None:
    @workflow
    async def bad() -> str:
        try:
            await double(object())  # type: ignore[arg-type]
        except SerializationError as exc:
            return str(exc)
        return "no error"

    h = History(bad)
    assert "cannot be recorded" in h.result
    assert "double" in h.result
    assert not any(isinstance(e, StepCreated) for e in h.events)


def test_step_given_up_before_creation_is_never_created() -> None:
    @workflow
    async def fickle() -> int:
        task = asyncio.ensure_future(double(1))
        await asyncio.sleep(0)  # the task starts and asks for the step
        task.cancel()
        return await double(2)

    h = History(fickle)
    created = [bytes(e.input) for e in h.events if isinstance(e, StepCreated)]
    assert created == [b'{"x":2}']
    h.run_steps()
    assert h.result == 4


def test_late_result_of_an_abandoned_step_is_consumed_silently() -> None:
    @workflow
    async def impatient() -> str:
        try:
            async with asyncio.timeout(60):
                await double(1)
        except TimeoutError:
            return "timed out"
        return "in time"

    h = History(impatient)
    slow = h.step_id("double")
    h.fire()
    assert h.result == "timed out"
    h.complete(slow, 2)  # arrives after the end: no error, no command
    assert h.progress.commands == []
    assert h.progress.finished


def test_step_call_outside_a_body_just_calls_the_function() -> None:
    assert asyncio.run(charge("o", 1)) == Receipt("o", 1)
    assert asyncio.run(sync_add(2)) == 3
    assert sync_add.fn(2, 5) == 7


@pytest.mark.anyio
async def test_step_call_inside_a_step_is_a_plain_call() -> None:
    @step
    async def outer(x: int) -> int:
        return await double(x) + 1

    assert await outer(4) == 9
