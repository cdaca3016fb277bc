"""Random workflow programs under random schedules and restarts: replays always match.

A small interpreter workflow runs a random plan (steps, gather, sleeps, hooks, named events,
races, timeouts, state updates, failing steps); a random schedule completes steps in any order,
fires timers, sends hook payloads and events (some before anyone waits), suspends and resumes,
and now and then "restarts" by replacing the live instance with one rebuilt from the log. After
every outside event the log is replayed whole and in random chunkings (``History.send``), and
the replay must end exactly where the live instance is.
"""

from __future__ import annotations

import asyncio
import random as stdlib_random
from typing import Any

import pytest

from tests.engine.history import History
from worldflow import (
    StepFailedError,
    create_hook,
    get_state,
    set_state,
    sleep,
    step,
    wait_for_event,
    workflow,
)
from worldflow.worlds import HookCreated, HookDisposed

TOKENS = ["t0", "t1", "t2"]
EVENTS = ["e0", "e1"]


@step(name="rnd.work")
async def work(n: int) -> int:
    return n


async def run_item(item: list[Any], out: list[Any]) -> None:
    kind = item[0]
    if kind == "step":
        out.append(await work(item[1]))
    elif kind == "gather":
        out.append(list(await asyncio.gather(*(work(n) for n in item[1]))))
    elif kind == "sleep":
        await sleep(item[1])
        out.append("slept")
    elif kind == "hook":
        with create_hook(token=item[1]) as hook:
            out.append(await hook)
    elif kind == "event":
        try:
            out.append(await wait_for_event(item[1], timeout=item[2]))
        except TimeoutError:
            out.append("no event")
    elif kind == "race":
        with create_hook(token=item[1]) as hook:
            got = asyncio.ensure_future(hook.receive())
            nap = asyncio.ensure_future(sleep(item[2]))
            try:
                done, _ = await asyncio.wait([got, nap], return_when=asyncio.FIRST_COMPLETED)
            finally:
                got.cancel()
                nap.cancel()
            out.append("hook" if got in done else "sleep")
    elif kind == "timeout":
        try:
            async with asyncio.timeout(item[1]):
                out.append(await work(item[2]))
        except TimeoutError:
            out.append("timeout")
    elif kind == "state":
        state = get_state() or []
        set_state([*state, item[1]])
    elif kind == "tasks":
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run_sub(sub)) for sub in item[1]]
        out.append([t.result() for t in tasks])


async def run_sub(item: list[Any]) -> list[Any]:
    out: list[Any] = []
    try:
        await run_item(item, out)
    except StepFailedError as exc:
        out.append(f"failed {exc.error_message}")
    return out


@workflow(name="rnd.interpreter")
async def interpreter(plan: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for item in plan:
        try:
            await run_item(item, out)
        except StepFailedError as exc:
            out.append(f"failed {exc.error_message}")
    out.append(get_state())
    return out


def random_item(rng: stdlib_random.Random, depth: int = 0) -> list[Any]:
    kinds = ["step", "gather", "sleep", "hook", "event", "race", "timeout", "state"]
    if depth == 0:
        kinds.append("tasks")
    kind = rng.choice(kinds)
    n = rng.randint(0, 99)
    match kind:
        case "step":
            return ["step", n]
        case "gather":
            return ["gather", [rng.randint(0, 99) for _ in range(rng.randint(1, 3))]]
        case "sleep":
            return ["sleep", rng.choice([1, 60, 3600])]
        case "hook" | "race":
            token = f"{rng.choice(TOKENS)}-{n}"
            return ["hook", token] if kind == "hook" else ["race", token, rng.choice([5, 600])]
        case "event":
            return ["event", rng.choice(EVENTS), rng.choice([None, 30])]
        case "timeout":
            return ["timeout", rng.choice([10, 1000]), n]
        case "state":
            return ["state", n]
        case _:
            return ["tasks", [random_item(rng, depth + 1) for _ in range(2)]]


def live_tokens(h: History) -> list[str]:
    live: dict[str, str] = {}
    for event in h.events:
        if isinstance(event, HookCreated):
            live[event.correlation_id] = event.token
        elif isinstance(event, HookDisposed):
            live.pop(event.correlation_id, None)
    return list(live.values())


def act(h: History, rng: stdlib_random.Random) -> None:
    """One random outside event (or a restart)."""
    choices: list[str] = []
    if h.progress.pending_steps:
        choices += ["complete", "complete", "fail"]
    if h.progress.waits:
        choices.append("fire")
    if live_tokens(h):
        choices.append("hook")
    choices += ["event", "restart"]
    choices.append("resume" if h.progress.suspended else "suspend")
    match rng.choice(choices):
        case "complete":
            corr = rng.choice(h.progress.pending_steps)
            h.complete(corr, f"r{len(h.events)}", started=rng.random() < 0.5)
        case "fail":
            h.fail(rng.choice(h.progress.pending_steps), message=f"f{len(h.events)}")
        case "fire":
            h.fire(rng.choice(h.progress.waits)[0])
        case "hook":
            h.resume_hook(rng.choice(live_tokens(h)), len(h.events))
        case "event":
            h.raise_event(rng.choice(EVENTS), len(h.events))
        case "suspend":
            h.suspend()
        case "resume":
            h.resume()
        case "restart":
            h.instance.close()
            h.instance = h.new_instance()
            h.progress = h.instance.feed(h.events)
            h.settle()


def run_random_program(seed: int) -> None:
    rng = stdlib_random.Random(seed)
    plan = [random_item(rng) for _ in range(rng.randint(1, 6))]
    h = History(interpreter, plan, run_id=f"wrun_rnd{seed}")
    for _ in range(400):
        if h.progress.finished:
            break
        act(h, rng)
    if h.progress.suspended:
        h.resume()
    assert h.progress.finished, f"plan {plan} did not finish: {h.progress.blocked_on}"
    output = h.result
    assert len(output) >= 1, plan


@pytest.mark.parametrize("seed", range(25))
def test_random_programs_replay_like_the_live_run(seed: int) -> None:
    run_random_program(seed)


def test_many_more_random_programs(slow: bool) -> None:
    """The long budget (``--slow``): 1,000 more programs and schedules."""
    for seed in range(1000, 2000 if slow else 1010):
        run_random_program(seed)
