"""An engine process for ``test_postgres_engines``: a real ``worldflow.Engine`` on a
PostgreSQL world, serving a workflow with steps, a durable sleep and a hook.

    python -m tests.worlds.postgres_engine_worker URL INDEX RUNS TTL NAP

It starts runs ``pgmix-<INDEX*100+i>`` (``i < RUNS``; it owns them from their first event),
then serves until SIGTERM (a clean exit: the engine releases its runs) or until it is killed.
The workflow, for an input ``n``: a step (+1), a durable sleep of ``NAP + 0.3 * (n % 100)``
seconds, a step (+2), a hook with token ``pgmix-<n>`` (the test sends ``10 * n``), a step
(+ the payload): it returns ``11 * n + 3``.

It prints one JSON object per line, written as things happen:

* ``{"engine": id}`` for every registration (an engine declared dead registers again);
* ``{"step": label, "engine": id}`` as each step attempt starts;
* ``{"append": {...}}`` for every append the engine makes: run, fence (engine id, epoch),
  whether it holds owner-only events, when it was *called* (``time.time()``, which the test
  compares with the moment it saw the takeover), and the outcome (the stored events' seqs,
  or the error's class name);
* ``{"claimed": [[run_id, epoch, last_seq], ...]}`` for every non-empty ``claim_orphans``;
* ``{"ready": id}`` once its runs are started, and
  ``{"released": time}`` once a SIGTERM made it leave (after its runs were released).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Collection, Sequence
from typing import Any

from worldflow import Engine, EntityConflictError, create_hook, sleep, step, workflow
from worldflow.worlds import OWNER_ONLY_EVENTS, AnyEvent, EventResult, Fence, open_world

STEP_PAUSE = 0.05


def say(**fields: Any) -> None:
    """One line of JSON on stdout, flushed at once (the test reads it as it comes)."""
    print(json.dumps(fields), flush=True)


_engine_id: list[str] = []  # the current registration, for the step lines


@step(name="pgmix.add", max_retries=100)
async def add(x: int, k: int, label: str) -> int:
    """``x + k``, after a short pause (the step's work); announces each attempt."""
    say(step=label, engine=_engine_id[-1] if _engine_id else None)
    await asyncio.sleep(STEP_PAUSE)
    return x + k


@workflow(name="pgmix.flow")
async def flow(n: int, nap: float) -> int:
    """A step, a durable sleep, a step, a hook from outside, a step."""
    x = await add(n, 1, f"{n}/1")
    await sleep(nap + 0.3 * (n % 100))
    x = await add(x, 2, f"{n}/2")
    got = await create_hook(token=f"pgmix-{n}")
    return await add(x, int(got), f"{n}/3")


def expected(n: int) -> int:
    """What ``flow(n)`` returns when its hook gets ``10 * n``."""
    return 11 * n + 3


class Recorder:
    """Wraps a world's ``append``, ``claim_orphans`` and ``register_engine`` to print them."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self._append = world.append
        self._claim = world.claim_orphans
        self._register = world.register_engine
        world.append = self.append
        world.claim_orphans = self.claim_orphans
        world.register_engine = self.register_engine

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        record: dict[str, Any] = {
            "run": run_id,
            "fence": None if fence is None else [fence.engine_id, fence.epoch],
            "expected_seq": expected_seq,
            "owner_only": any(type(e) in OWNER_ONLY_EVENTS for e in events),
            "types": [type(e).__name__ for e in events],
            "at": time.time(),
        }
        try:
            result: EventResult = await self._append(
                run_id, events, fence=fence, expected_seq=expected_seq
            )
        except BaseException as exc:
            record["error"] = type(exc).__name__
            say(append=record)
            raise
        record["seqs"] = [e.seq for e in result.events]
        record["epoch"] = result.run.owner_epoch
        say(append=record)
        return result

    async def claim_orphans(self, engine_id: str, *, workflows: Collection[str], limit: int) -> Any:
        runs = await self._claim(engine_id, workflows=workflows, limit=limit)
        if runs:
            say(claimed=[[r.run_id, r.owner_epoch, r.last_seq] for r in runs], engine=engine_id)
        return runs

    async def register_engine(self, *, workflows: Collection[str], ttl: float) -> Any:
        info = await self._register(workflows=workflows, ttl=ttl)
        _engine_id.append(info.engine_id)
        say(engine=info.engine_id)
        return info


async def main(url: str, index: int, runs: int, ttl: float, nap: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    world = await open_world(url)
    Recorder(world)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with Engine(world=world, workflows=[flow], ttl=ttl) as engine:
            for i in range(runs):
                n = index * 100 + i
                with contextlib.suppress(EntityConflictError):
                    await engine.start(flow, n, nap, run_id=f"pgmix-{n}")
            say(ready=engine.engine_id)
            await stop.wait()
        say(released=time.time())
    finally:
        await world.aclose()


if __name__ == "__main__":
    url, index, runs, ttl, nap = sys.argv[1:6]
    asyncio.run(main(url, int(index), int(runs), float(ttl), float(nap)))
