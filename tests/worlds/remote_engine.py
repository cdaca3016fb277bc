"""An engine process for the multi-process remote world test.

``python -m tests.worlds.remote_engine URL LEDGER`` runs an Engine for :func:`relay` on the
remote world at ``URL`` until it is stopped (SIGTERM) or killed. Every step attempt appends
one line ``run_id step_id pid`` to ``LEDGER`` before it returns, so the test can tell
executions (at least once) from recorded results (exactly once). The workflow and step are
used from this module by its name (never as ``__main__``), so every process names them alike.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from worldflow import Engine, create_hook, get_step_metadata, step, workflow
from worldflow.worlds import open_world

TTL = 3.0
"""Seconds without a heartbeat before the others take a dead engine's runs over."""

LEDGER_ENV = "RELAY_LEDGER"


@step
async def slow_add(x: int, y: int) -> int:
    await asyncio.sleep(0.02)
    meta = get_step_metadata()
    with open(os.environ[LEDGER_ENV], "a") as ledger:  # noqa: ASYNC230  (one short line)
        ledger.write(f"{meta.run_id} {meta.step_id} {os.getpid()}\n")
    return x + y


@workflow
async def relay(i: int) -> int:
    """Two steps, a hook, two more steps: the result is ``3 * i + payload + 3``."""
    a = await slow_add(i, i)
    b = await slow_add(a, 1)
    payload = await create_hook(token=f"relay-{i}")
    c = await slow_add(b, int(payload))
    return await slow_add(c, i + 2)


def expected(i: int, payload: int) -> int:
    """What ``relay(i)`` returns when its hook gets ``payload``."""
    return 3 * i + payload + 3


async def main(url: str) -> None:
    world = await open_world(url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Engine(world, workflows=[relay], ttl=TTL):
        print("engine ready", flush=True)
        await stop.wait()
    await world.aclose()


def cli() -> None:
    """The process's entry point: ``URL LEDGER`` from the command line."""
    os.environ[LEDGER_ENV] = sys.argv[2]
    asyncio.run(main(sys.argv[1]))


if __name__ == "__main__":
    from tests.worlds import remote_engine

    remote_engine.cli()
