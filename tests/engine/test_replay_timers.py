"""Durable timers: worldflow.sleep, asyncio.timeout / wait_for / wait, and the workflow clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.engine.history import T0, History
from worldflow import _serde, create_hook, now, random, sleep, step, uuid4, workflow
from worldflow.worlds import AnyEvent, HookReceived, StepCompleted, WaitCompleted, WaitCreated


@step
async def work(x: int) -> int:
    return x + 1


def test_sleep_records_a_wait_from_the_workflow_clock() -> None:
    @workflow
    async def napper() -> list[str]:
        before = now()
        await sleep("1d")
        return [before.isoformat(), now().isoformat()]

    h = History(napper)
    created = h.events[-1]
    assert isinstance(created, WaitCreated)
    started = h.events[1].created_at
    assert created.resume_at == started + timedelta(days=1)
    assert h.progress.waits == [(created.correlation_id, started + timedelta(days=1))]
    assert h.progress.blocked_on == [
        f"sleep until {(started + timedelta(days=1)).isoformat()[:19]}Z"
    ]
    h.fire()
    before, after = h.result
    assert before == started.isoformat()
    fired = next(e for e in h.events if isinstance(e, WaitCompleted))
    assert after == fired.created_at.isoformat()


def test_sleep_until_a_datetime_and_past_times() -> None:
    @workflow
    async def until() -> str:
        await sleep(datetime(2020, 1, 1, tzinfo=UTC))  # in the past: no timer
        await sleep(0)
        await sleep(datetime(2030, 5, 6, 7, 8, tzinfo=UTC))
        return "woke"

    h = History(until)
    waits = [e for e in h.events if isinstance(e, WaitCreated)]
    assert [w.resume_at for w in waits] == [datetime(2030, 5, 6, 7, 8, tzinfo=UTC)]
    h.fire()
    assert h.result == "woke"


def test_sleep_with_a_naive_datetime_is_refused() -> None:
    @workflow
    async def naive() -> str:
        try:
            await sleep(datetime(2030, 1, 1))
        except ValueError as exc:
            return str(exc)
        return "slept"

    h = History(naive)
    assert "timezone-aware" in h.result


def test_timeout_around_a_step_that_finishes_in_time() -> None:
    @workflow
    async def bounded() -> int:
        async with asyncio.timeout(30):
            return await work(1)

    h = History(bounded)
    timer = next(e for e in h.events if isinstance(e, WaitCreated))
    assert timer.resume_at == h.events[1].created_at + timedelta(seconds=30)
    assert h.types()[-2:] == ["wait_created", "step_created"]
    h.run_steps()
    assert h.result == 2
    # the body gave the timer up: it tells the world with wait_completed before finishing
    assert h.types()[-2:] == ["wait_completed", "run_completed"]
    assert h.events[-2].correlation_id == timer.correlation_id


def test_timeout_around_a_step_that_is_too_slow() -> None:
    @workflow
    async def bounded() -> str:
        try:
            await asyncio.wait_for(work(1), timeout=30)
        except TimeoutError:
            return "too slow"
        return "in time"

    h = History(bounded)
    slow = h.step_id("work")
    h.fire()
    assert h.result == "too slow"
    h.complete(slow, 2)
    assert h.progress.commands == []


def test_runtime_timer_first_counts_as_the_bodys_wait_completed() -> None:
    @workflow
    async def bounded() -> int:
        async with asyncio.timeout(30):
            return await work(1)

    h = History(bounded)
    corr = h.step_id("work")
    timer = next(e for e in h.events if isinstance(e, WaitCreated))
    progress = h.feed(
        h.append(StepCompleted(run_id=h.run_id, correlation_id=corr, result=_serde.encode(5)))
    )
    assert [c.type for c in progress.commands] == ["wait_completed", "run_completed"]
    # Before the runtime appends them, its timer fires and writes wait_completed itself.
    progress = h.feed(h.append(WaitCompleted(run_id=h.run_id, correlation_id=timer.correlation_id)))
    assert [c.type for c in progress.commands] == ["run_completed"]
    h.settle()
    h.check_replay()
    assert h.result == 5
    assert h.types().count("wait_completed") == 1


def test_wait_first_completed_hook_before_sleep() -> None:
    @workflow
    async def race() -> str:
        hook = create_hook(token="approve")
        got = asyncio.ensure_future(hook.receive())
        nap = asyncio.ensure_future(sleep("1h"))
        done, _ = await asyncio.wait([got, nap], return_when=asyncio.FIRST_COMPLETED)
        got.cancel()
        nap.cancel()
        return "hook" if got in done else "sleep"

    h = History(race)
    assert h.types()[-2:] == ["hook_created", "wait_created"]
    h.resume_hook("approve", {"ok": True})
    assert h.result == "hook"
    assert "wait_completed" in h.types()  # the sleep was given up and closed


def test_wait_first_completed_sleep_before_hook() -> None:
    @workflow
    async def race() -> str:
        hook = create_hook(token="approve")
        got = asyncio.ensure_future(hook.receive())
        nap = asyncio.ensure_future(sleep("1h"))
        done, _ = await asyncio.wait([got, nap], return_when=asyncio.FIRST_COMPLETED)
        got.cancel()
        nap.cancel()
        return "hook" if got in done else "sleep"

    h = History(race)
    h.fire()
    assert h.result == "sleep"


def test_both_race_events_in_one_batch_resolve_in_log_order() -> None:
    @workflow
    async def race() -> str:
        hook = create_hook(token="approve")
        got = asyncio.ensure_future(hook.receive())
        nap = asyncio.ensure_future(sleep("1h"))
        done, _ = await asyncio.wait([got, nap], return_when=asyncio.FIRST_COMPLETED)
        winner = "hook" if got in done else "sleep"
        got.cancel()
        nap.cancel()
        again = await hook  # a payload that arrived while nobody waited is kept
        return f"{winner}:{again}"

    for hook_first in (True, False):
        h = History(race)
        hook_id = h.hook_id("approve")
        wait_id = h.progress.waits[0][0]
        received: list[AnyEvent] = [
            HookReceived(run_id=h.run_id, correlation_id=hook_id, payload=_serde.encode("a")),
            HookReceived(run_id=h.run_id, correlation_id=hook_id, payload=_serde.encode("b")),
        ]
        fired = WaitCompleted(run_id=h.run_id, correlation_id=wait_id)
        h.send(*([*received, fired] if hook_first else [fired, *received]))
        assert h.result == ("hook:b" if hook_first else "sleep:a")


def test_clock_and_randomness_replay_identically() -> None:
    @workflow
    async def dice() -> list[object]:
        first = [now(), random(), uuid4()]
        await sleep(5)
        return [*first, now(), random(), uuid4()]

    h = History(dice)
    h.fire()
    t1, r1, u1, t2, r2, u2 = h.result
    assert t1 == h.events[1].created_at
    assert t2 > t1
    assert 0 <= r1 < 1
    assert r1 != r2
    assert u1 != u2
    assert u1.version == 4
    other = History(dice, run_id="wrun_other")
    other.fire()
    assert other.result[1] != r1, "randomness is seeded by the run id"
    assert h.events[0].created_at > T0
