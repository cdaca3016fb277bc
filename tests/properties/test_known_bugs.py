"""Engine bugs the replay properties found, kept as regression tests.

Each test is the smallest reproduction of a failure hypothesis shrank to:

* body tasks hashed by memory address, so iterating the sets ``asyncio.wait`` returns gave
  another order on replay and an unchanged workflow failed with ``NondeterminismError``
  (fixed: body tasks and futures hash by creation number);
* a step failure recorded after the body ended (a run cancelled while the attempt was in
  flight; worlds accept that result) raised ``InvalidStateError`` on replay (fixed: a
  cancelled future is not resolved again).
"""

from __future__ import annotations

import asyncio

from tests.engine.history import History
from worldflow import sleep, step, workflow
from worldflow.worlds import StepStarted


@step(name="known.cleanup")
async def cleanup(n: int) -> int:
    return n


@step(name="known.work")
async def work(n: int) -> int:
    return n


async def _branch(n: int) -> int:
    try:
        await sleep(60 + n)
    except asyncio.CancelledError:
        await cleanup(n)  # cleanup work in a cancelled branch
        raise
    return n


@workflow(name="known.race")
async def race() -> list[int]:
    tasks = [asyncio.ensure_future(_branch(n)) for n in range(6)]
    tasks.append(asyncio.ensure_future(work(99)))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:  # the natural way to write it: iterate the set asyncio.wait returns
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [task.result() for task in done]


def test_iterating_the_sets_asyncio_wait_returns_replays() -> None:
    h = History(race, check=False)
    h.run_steps()
    assert h.result == [99]
    for _ in range(20):
        instance, progress = h.replay()
        instance.close()
        assert progress.error is None, progress.error


@workflow(name="known.one_step")
async def one_step() -> int:
    return await work(1)


def test_a_step_failure_after_the_body_ended_is_ignored() -> None:
    h = History(one_step, check=False)
    corr = h.step_id("work")
    h.send(StepStarted(run_id=h.run_id, correlation_id=corr))
    h.cancel()
    h.fail(corr)  # the attempt in flight fails after the cancel: the world accepts it
    instance, progress = h.replay()
    instance.close()
    assert progress.finished
    assert progress.commands == []
