"""Re-record the golden histories: ``python -m tests.histories.record [NAME ...]``.

Never run by the tests: a history is re-recorded on purpose, when a change to the log format
or to replay is intended (and old runs in flight are known to be fine with it). Each scenario
runs one workflow of ``workflows.py`` on a memory world with a virtual clock, drives it from
outside (hooks, events, suspension, cancellation), and saves the run's log, and its child
runs' logs, as JSONL next to this file. ``nondeterministic`` records a run of an *old* version
of ``golden.changed`` and saves the message replaying it against the current version gives.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.order_demo import place_order
from tests.histories import workflows as wf
from worldflow import Engine, NondeterminismError, Run, WebhookRequest
from worldflow.testing import (
    fetch_history,
    memory_engine,
    raise_event_when_waiting,
    replay,
    resume_hook_when_waiting,
    wait_until_blocked,
    write_history,
)

HERE = Path(__file__).parent
TIMEOUT = 30 * 86400.0  # virtual seconds: generous, the runs take milliseconds


async def _finish(engine: Engine, run: Run) -> None:
    await run.result(timeout=TIMEOUT)


async def _hooks(engine: Engine, run: Run) -> None:
    await resume_hook_when_waiting(run, "single:o-1", {"ok": True})
    await resume_hook_when_waiting(run, "many:o-1", 1)
    await resume_hook_when_waiting(run, "many:o-1", 2)
    await resume_hook_when_waiting(run, "fast:o-1", "fast payload")
    # "slow:o-1" gets nothing: its one-hour sleep wins the race on the virtual clock.
    async for event in run.events():
        if event.type == "hook_created" and event.data["is_webhook"]:
            await wait_until_blocked(run, hook=event.data["token"])
            request = WebhookRequest(method="POST", path="/hooks", body=b"delivered")
            await engine.resume_webhook(event.data["token"], request)
            break
    await run.result(timeout=TIMEOUT)


async def _events(engine: Engine, run: Run) -> None:
    await engine.raise_event(run.run_id, "early", {"n": 1})  # before the workflow waits
    await raise_event_when_waiting(run, "final", "last")  # "late" times out meanwhile
    await run.result(timeout=TIMEOUT)


async def _suspension(engine: Engine, run: Run) -> None:
    await wait_until_blocked(run, on="suspended, waiting for resume_step")
    await engine.resume_step(run.run_id, "golden.approval", "approved")
    await wait_until_blocked(run, hook="after:o-3")
    await run.suspend()
    await engine.resume_hook("after:o-3", "sent while suspended")
    await run.resume()
    await run.result(timeout=TIMEOUT)


async def _cancelled(engine: Engine, run: Run) -> None:
    await wait_until_blocked(run, hook="golden:never")
    await run.cancel("nobody came")


def _order(ok: bool) -> Callable[[Engine, Run], Awaitable[None]]:
    async def drive(engine: Engine, run: Run) -> None:
        order_id = (await run.info()).input["order_id"]
        decision = {"ok": True} if ok else {"ok": False, "why": "address"}
        await resume_hook_when_waiting(run, f"approve:{order_id}", decision)
        if ok:
            shipment = {"carrier": "ACME", "tracking": "TRK-42"}
            await raise_event_when_waiting(run, "shipped", shipment)
        await run.result(timeout=TIMEOUT)

    return drive


@dataclass(frozen=True)
class Scenario:
    """One recorded run: which workflow, how it is started and driven."""

    workflow: Any
    args: tuple[Any, ...] = ()
    drive: Callable[[Engine, Run], Awaitable[None]] = _finish
    options: dict[str, Any] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    "steps": Scenario(wf.steps_flow, (5,)),
    "timers": Scenario(wf.timers_flow),
    "hooks": Scenario(wf.hooks_flow, ("o-1",), _hooks),
    "events": Scenario(wf.events_flow, (), _events),
    "state": Scenario(wf.state_flow, options={"initial_state": {"seen": 41}}),
    "child-workflows": Scenario(wf.parent_flow, (7,)),
    "suspension": Scenario(wf.suspension_flow, ("o-3",), _suspension),
    "cancelled": Scenario(wf.cancelled_flow, (), _cancelled),
    "order-approved": Scenario(place_order, ("o-100", ["kettle", "mug"], 4599), _order(True)),
    "order-declined": Scenario(place_order, ("o-101", ["lamp"], 2999), _order(False)),
}
"""Every history kept here but the nondeterministic one, by file name."""


async def record(name: str, scenario: Scenario) -> list[Path]:
    """Run one scenario and save its logs; returns the files written."""
    async with memory_engine([scenario.workflow, *wf.WORKFLOWS.values()]) as engine:
        run = await engine.start(
            scenario.workflow, *scenario.args, run_id=f"golden-{name}", **scenario.options
        )
        await scenario.drive(engine, run)
        written = [HERE / f"{name}.jsonl"]
        write_history(await fetch_history(engine.world, run.run_id), written[0])
        children = await engine.list_runs()
        child_ids = sorted(r.run_id for r in children.items if r.parent_run_id == run.run_id)
        for i, child_id in enumerate(child_ids, start=1):
            path = HERE / f"{name}.child-{i}.jsonl"
            write_history(await fetch_history(engine.world, child_id), path)
            written.append(path)
    return written


async def record_nondeterministic() -> list[Path]:
    """A run of golden.changed as it was before the audit step was inserted."""
    from worldflow import workflow

    @workflow(name="golden.changed")
    async def changed_v1(item: str) -> list[int]:
        first = await wf.add(1, 2)
        second = await wf.add(first, 3)
        return [first, second]

    async with memory_engine([changed_v1]) as engine:
        run = await engine.start(changed_v1, "x", run_id="golden-nondeterministic")
        await run.result(timeout=TIMEOUT)
        events = await fetch_history(engine.world, run.run_id)
    path = HERE / "nondeterministic.jsonl"
    write_history(events, path)
    try:
        replay(events, wf.changed_flow)
    except NondeterminismError as exc:
        expected = HERE / "nondeterministic.expected.txt"
        expected.write_text(str(exc) + "\n")
        return [path, expected]
    raise AssertionError("the v1 history replays against v2: the golden case proves nothing")


async def main(names: list[str]) -> None:
    chosen = names or [*SCENARIOS, "nondeterministic"]
    for name in chosen:
        if name == "nondeterministic":
            paths = await record_nondeterministic()
        elif name in SCENARIOS:
            paths = await record(name, SCENARIOS[name])
        else:
            raise SystemExit(f"unknown history {name!r}; known: {', '.join(SCENARIOS)}")
        for path in paths:
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            print(f"wrote {shown}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
