"""A worker process for ``test_postgres_processes``: one "engine" on a PostgreSQL world.

It drives runs through the world's ownership API only (no engine code): register with a short
TTL and heartbeat, sweep orphans with ``claim_orphans``, and drive each claimed run's chain of
steps with fenced appends: ``step_created`` + ``step_started`` (owner-only), a short sleep
(the step's work), ``step_completed`` (anyone), and at the end ``run_completed`` (owner-only).
A refused owner-only append means the run moved: the worker stops driving it.

It prints one JSON object per line: ``{"ready": engine_id}``, ``{"step": [run_id, index]}``
before each step's work, ``{"refused": run_id}`` and ``{"lost": engine_id}``.

    python -m tests.worlds.postgres_owner_worker URL STEPS TTL CAPACITY
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import msgspec

from worldflow.errors import EntityConflictError, OwnershipLostError
from worldflow.worlds import (
    Fence,
    RunCompleted,
    StepCompleted,
    StepCreated,
    StepStarted,
    StepStatus,
    WorkflowRun,
    open_world,
)

WORKFLOW = "chain"


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def drive(world: Any, run: WorkflowRun, engine_id: str, steps: int) -> None:
    """Drive one claimed run to its end, or until it is taken away."""
    run_id = run.run_id
    fence = Fence(engine_id=engine_id, epoch=run.owner_epoch)
    done = {s.step_id for s in (await world.list_steps(run_id)).items if s.status.is_terminal}
    try:
        for index in range(steps):
            step_id = f"s{index}"
            if step_id in done:
                continue
            step = None
            try:
                step = await world.get_step(run_id, step_id)
            except Exception:
                await world.append(
                    run_id,
                    [
                        StepCreated(
                            run_id=run_id,
                            correlation_id=step_id,
                            step_name="s",
                            input=msgspec.Raw(b"0"),
                        )
                    ],
                    fence=fence,
                )
            if step is None or step.status is not StepStatus.COMPLETED:
                await world.append(
                    run_id, [StepStarted(run_id=run_id, correlation_id=step_id)], fence=fence
                )
                say(step=[run_id, index])
                await asyncio.sleep(0.05)
                try:
                    await world.append(
                        run_id,
                        [
                            StepCompleted(
                                run_id=run_id,
                                correlation_id=step_id,
                                result=msgspec.Raw(str(index).encode()),
                            )
                        ],
                        fence=fence,
                    )
                except EntityConflictError:
                    pass  # another attempt's result won
        await world.append(
            run_id,
            [RunCompleted(run_id=run_id, output=msgspec.Raw(str(steps).encode()))],
            fence=fence,
        )
    except (EntityConflictError, OwnershipLostError):
        # RunOwnedElsewhereError: another engine owns it now; RunTerminalError: and it has
        # already finished it. Either way this decision was refused.
        say(refused=run_id)


async def main(url: str, steps: int, ttl: float, capacity: int) -> None:
    world = await open_world(url)
    engine = await world.register_engine(workflows=[WORKFLOW], ttl=ttl)
    engine_id = engine.engine_id
    say(ready=engine_id)
    tasks: set[asyncio.Task[None]] = set()

    async def heartbeat() -> None:
        nonlocal engine_id
        while True:
            await asyncio.sleep(ttl / 5)
            try:
                await world.heartbeat(engine_id)
            except OwnershipLostError:
                say(lost=engine_id)
                engine_id = (await world.register_engine(workflows=[WORKFLOW], ttl=ttl)).engine_id

    beating = asyncio.ensure_future(heartbeat())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            claimed: list[WorkflowRun] = []
            room = capacity - len(tasks)
            if room > 0:
                with contextlib.suppress(OwnershipLostError):
                    claimed = await world.claim_orphans(engine_id, workflows=[WORKFLOW], limit=room)
            for run in claimed:
                task = asyncio.ensure_future(drive(world, run, engine_id, steps))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await stop.wait()
        # A clean exit: stop driving, hand every run back at once (no TTL wait).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        say(released=await world.deregister_engine(engine_id))
    finally:
        beating.cancel()
        await world.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
