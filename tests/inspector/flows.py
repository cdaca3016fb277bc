"""Workflows the inspector tests run (module level, so their names are stable)."""

from __future__ import annotations

import asyncio
from typing import Any

from worldflow import (
    StreamWriter,
    create_hook,
    get_step_metadata,
    get_writable,
    patched,
    sleep,
    step,
    wait_for_event,
    workflow,
)

HOSTILE = (
    '<script>window.__x=1</script><img src=x onerror=window.__x=2>"><svg onload=alert(1)></script>'
)
"""Markup that must show as text everywhere (run input, step names, errors, tokens)."""


@step(max_retries=3, backoff="10ms")
async def charge_card(amount: int) -> str:
    """Fails twice, then succeeds."""
    if get_step_metadata().attempt < 3:
        raise ValueError(f"card declined {HOSTILE}")
    return f"charged {amount}"


@step
async def fetch(i: int) -> int:
    await asyncio.sleep(0.02 * (i + 1))
    return i


@workflow
async def order(order_id: str, amount: int = 10) -> dict[str, Any]:
    """Charge (retried), fetch three things in parallel, wait for approval."""
    charged = await charge_card(amount)
    fetched = await asyncio.gather(*(fetch(i) for i in range(3)))
    approval = await create_hook(token=f"approve:{order_id}")
    return {"charged": charged, "fetched": fetched, "approval": approval}


@workflow
async def waits(name: str) -> Any:
    """Waits for a named event, then sleeps a little."""
    got = await wait_for_event("go")
    await sleep(0.01)
    return got


@workflow
async def echo(value: Any) -> Any:
    """Returns its input."""
    return value


@workflow
async def hostile(value: str) -> Any:
    """Waits on a hook whose token holds markup, then fails with markup in the message."""
    await create_hook(token=f"tok-{HOSTILE}")
    raise RuntimeError(value)


@step
async def talk(words: list[str]) -> int:
    """Writes each word to the run's stream."""
    out = get_writable()
    assert isinstance(out, StreamWriter)
    for word in words:
        await out.write(word)
    return len(words)


@workflow
async def chatty(words: list[str]) -> int:
    """Streams words from a step, then waits for a hook before it ends."""
    n = await talk(words)
    await create_hook(token="chatty:done")
    return n


@workflow
async def parent(n: int) -> Any:
    """Runs echo as a child workflow."""
    return await echo(n)


@workflow
async def napper(days: int) -> str:
    """Sleeps for days (a person wakes it from the inspector)."""
    await sleep(f"{days}d")
    return f"slept {days}d"


@step(max_retries=2, backoff="1h")
async def flaky_once(key: str) -> str:
    """Fails its first attempt, then backs off for an hour (unless retried now)."""
    if get_step_metadata().attempt < 2:
        raise ConnectionError(f"first attempt of {key} fails")
    return f"ok {key}"


@workflow
async def retrier(key: str) -> str:
    """One step that backs off for an hour after its first attempt."""
    return await flaky_once(key)


@workflow
async def versioned(x: int) -> int:
    """Takes the new branch of a patch (its log holds the versioning mark)."""
    if patched("double-it"):
        return x * 2
    return x
