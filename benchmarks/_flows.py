"""The workflows and steps the workloads run (also imported by the child processes, so their
registered names are the same in the benchmark process and in the children)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Final

from worldflow import create_hook, get_step_metadata, sleep, step, workflow

__all__ = [
    "STEP_TIMES",
    "add_one",
    "chain",
    "echo",
    "fan_out",
    "ledger_chain",
    "long_chain",
    "napper",
    "one_step",
    "wait_hook",
]

STEP_TIMES: Final[dict[str, list[float]]] = {}
"""W6: when each ``timed_add_one`` of a run key ran (``perf_counter``), in this process."""


@step
async def add_one(x: int) -> int:
    """The unit of work: return ``x + 1``."""
    return x + 1


@step
async def echo(x: int) -> int:
    """Return ``x`` (W4's fanned-out step)."""
    return x


@step
async def timed_add_one(key: str, x: int) -> int:
    """``x + 1``, noting when it ran under ``key`` (W6's live cost per event)."""
    STEP_TIMES.setdefault(key, []).append(time.perf_counter())
    return x + 1


@step
async def slow_add_one(key: str, index: int, x: int, ledger: str, pause: float) -> int:
    """W5's step: sleep ``pause`` s, append ``key index step_id`` to the ledger, return x + 1.

    One small ``write`` on an ``O_APPEND`` file is one line even with many writers, and a
    SIGKILL loses nothing the kernel already has, so the ledger needs no fsync.
    """
    await asyncio.sleep(pause)
    line = f"{key} {index} {get_step_metadata().step_id}\n".encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return x + 1


@workflow
async def chain(x: int, steps: int) -> int:
    """W1: ``steps`` steps in sequence, each adding one."""
    for _ in range(steps):
        x = await add_one(x)
    return x


@workflow
async def one_step(x: int) -> int:
    """W2: a single step."""
    return await add_one(x)


@workflow
async def wait_hook(token: str, x: int) -> int:
    """W3 and W7: wait for one payload on the hook ``token``; return ``x`` + payload."""
    payload: int = await create_hook(token=token)
    return x + payload


@workflow
async def fan_out(width: int) -> int:
    """W4: gather ``width`` steps and sum their results."""
    return sum(await asyncio.gather(*(echo(i) for i in range(width))))


@workflow
async def ledger_chain(key: str, steps: int, ledger: str, pause: float) -> int:
    """W5: ``steps`` slow steps in sequence, each recorded in the ledger; returns ``steps``."""
    x = 0
    for index in range(steps):
        x = await slow_add_one(key, index, x, ledger, pause)
    return x


@workflow
async def long_chain(key: str, steps: int, token: str) -> int:
    """W6: ``steps`` timed steps in sequence, then park on hook ``token``; returns
    ``steps`` + payload."""
    x = 0
    for _ in range(steps):
        x = await timed_add_one(key, x)
    payload: int = await create_hook(token=token)
    return x + payload


@workflow
async def napper(x: int, seconds: float) -> int:
    """W8: sleep ``seconds`` on a durable timer, then return ``x``."""
    await sleep(seconds)
    return x
