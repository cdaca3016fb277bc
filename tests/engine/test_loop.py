"""The deterministic workflow loop: scheduling, durable timers, isolation, refusals, shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.engine.history import History
from worldflow import DeterminismViolationError, create_hook, sleep, step, workflow
from worldflow._replay.loop import WorkflowLoop


class Timers:
    """Stands in for the instance: records the durable timers a loop asks for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.armed: list[asyncio.TimerHandle] = []
        self.cancelled: list[asyncio.TimerHandle] = []

    def loop(self) -> WorkflowLoop:
        return WorkflowLoop(
            clock=lambda: self.now,
            on_timer=self.armed.append,
            on_timer_cancelled=self.cancelled.append,
        )


def test_callbacks_run_in_fifo_order_until_idle() -> None:
    loop = Timers().loop()
    seen: list[str] = []
    loop.call_soon(seen.append, "a")
    loop.call_soon(lambda: loop.call_soon(seen.append, "c"))
    loop.call_soon(seen.append, "b")
    loop.call_soon(seen.append, "x").cancel()
    loop.run_until_idle()
    assert seen == ["a", "b", "c"]
    assert not loop.has_ready()
    loop.close()


def test_running_loop_is_swapped_and_restored() -> None:
    loop = Timers().loop()
    inside: list[object] = []
    loop.call_soon(lambda: inside.append(asyncio.get_running_loop()))
    assert asyncio.events._get_running_loop() is None
    loop.run_until_idle()
    assert inside == [loop]
    assert asyncio.events._get_running_loop() is None
    loop.close()


def test_timers_are_handed_to_the_owner_and_fire_on_demand() -> None:
    timers = Timers()
    loop = timers.loop()
    seen: list[str] = []
    handle = loop.call_later(30, seen.append, "fired")
    assert timers.armed == [handle]
    assert handle.when() == 1030.0
    loop.call_at(999.0, seen.append, "past")  # due already: runs at once, no durable timer
    loop.run_until_idle()
    assert seen == ["past"]
    loop.fire_timer(handle)
    loop.run_until_idle()
    assert seen == ["past", "fired"]
    other = loop.call_later(5, seen.append, "never")
    other.cancel()
    assert timers.cancelled == [other]
    loop.fire_timer(other)  # a cancelled handle does not run
    loop.run_until_idle()
    assert seen == ["past", "fired"]
    loop.close()


def test_tasks_and_gather_run_on_the_workflow_loop() -> None:
    loop = Timers().loop()

    async def child(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    async def main() -> list[int]:
        assert asyncio.get_running_loop() is loop
        return list(await asyncio.gather(child(1), child(2)))

    task = loop.create_task(main())
    loop.run_until_idle()
    assert task.result() == [2, 4]
    loop.close()


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda loop: loop.call_later(1, asyncio.futures._set_result_unless_cancelled), "sleep"),  # type: ignore[attr-defined]
        (lambda loop: loop.run_in_executor(None, print), "@step"),
        (lambda loop: loop.call_soon_threadsafe(print), "threads"),
        (lambda loop: loop.add_signal_handler(2, print), "signal handlers"),
        (lambda loop: loop.add_reader(0, print), "file descriptor readers"),
        (lambda loop: loop.set_default_executor(None), "no executor"),
        (lambda loop: loop.subprocess_exec(print, "ls").send(None), "subprocesses"),
        (lambda loop: loop.create_connection(print, "localhost", 80).send(None), "network"),
        (lambda loop: loop.getaddrinfo("localhost", 80).send(None), "DNS"),
    ],
)
def test_refused_calls_name_the_replacement(call: Any, needle: str) -> None:
    loop = Timers().loop()
    with pytest.raises(DeterminismViolationError, match=needle):
        call(loop)
    assert loop.violation is not None
    loop.close()


def test_the_loop_cannot_be_run_by_others() -> None:
    loop = Timers().loop()
    with pytest.raises(RuntimeError, match="driven by its workflow instance"):
        loop.run_forever()
    future = loop.create_future()
    future.add_done_callback(print)
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.create_task(asyncio.sleep(0))
    future.set_result(1)  # a late result for a body that is gone: its callbacks are dropped
    assert not loop.has_ready()


def test_shutdown_cancels_tasks_and_closes_async_generators_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = Timers().loop()
    events: list[str] = []

    async def ticker() -> AsyncIterator[int]:
        try:
            yield 1
            await loop.create_future()
            yield 2
        finally:
            events.append(f"agen closed on {type(asyncio.get_running_loop()).__name__}")

    async def consumer() -> None:
        async for _ in ticker():
            pass

    async def waiter() -> None:
        try:
            await loop.create_future()
        finally:
            events.append("waiter cancelled")

    async def stubborn() -> None:
        while True:
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                events.append("ignored cancel")

    for coro in (consumer(), waiter(), stubborn()):
        loop.create_task(coro)
    loop.run_until_idle()
    with caplog.at_level(logging.DEBUG):
        loop.shutdown(rounds=3)
        gc.collect()
    assert loop.is_closed()
    assert "waiter cancelled" in events
    assert "agen closed on WorkflowLoop" in events
    assert events.count("ignored cancel") == 3
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


@step
async def work(x: int) -> int:
    return x


def test_asyncio_sleep_in_a_body_fails_the_run_even_if_caught() -> None:
    @workflow
    async def sleepy() -> str:
        try:
            await asyncio.sleep(5)
        except Exception:
            return "swallowed"
        return "slept"

    h = History(sleepy)
    error = h.error
    assert error.name == "DeterminismViolationError"
    assert error.code == "determinism_violation"
    assert "worldflow.sleep" in error.message


def test_threads_in_a_body_fail_the_run_and_name_steps() -> None:
    @workflow
    async def threaded() -> str:
        return await asyncio.to_thread(str, 1)

    h = History(threaded)
    assert h.error.name == "DeterminismViolationError"
    assert "@step" in h.error.message


def test_sockets_in_a_body_fail_the_run() -> None:
    @workflow
    async def networked() -> str:
        sock = socket.socket()
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", 9))
        finally:
            sock.close()
        return "connected"

    h = History(networked)
    assert h.error.name == "DeterminismViolationError"
    assert "sockets cannot be used in a workflow body" in h.error.message


def test_closing_an_instance_mid_run_cancels_the_body_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned: list[str] = []

    @workflow
    async def busy() -> None:
        async def side() -> None:
            try:
                await sleep("1h")
            finally:
                cleaned.append("side")

        task = asyncio.ensure_future(side())
        try:
            with create_hook(token="x") as hook:
                await asyncio.gather(hook.receive(), work(1))
        finally:
            cleaned.append("main")
            task.cancel()

    h = History(busy)
    with caplog.at_level(logging.DEBUG):
        h.instance.close()
        h.instance.close()  # idempotent
        gc.collect()
    assert sorted(cleaned) == ["main", "side"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(RuntimeError, match="closed"):
        h.instance.feed([])


@pytest.mark.anyio
async def test_feeding_from_a_host_coroutine_keeps_the_host_loop_intact() -> None:
    host = asyncio.get_running_loop()
    me = asyncio.current_task()
    seen: list[object] = []

    @workflow
    async def observed() -> int:
        seen.append(asyncio.get_running_loop())
        seen.append(asyncio.current_task())
        return await work(5)

    h = History(observed, check=False)
    h.run_steps()
    assert h.result == 5
    assert isinstance(seen[0], WorkflowLoop)
    assert asyncio.get_running_loop() is host
    assert asyncio.current_task() is me
    body_task = seen[1]
    assert isinstance(body_task, asyncio.Task)
    assert body_task not in asyncio.all_tasks()
    assert body_task.get_loop() is seen[0]
    await asyncio.sleep(0)  # the host loop still works
