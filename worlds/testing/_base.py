"""Shared pieces of the conformance suite: the world factory type, the base test class and
small builders for runs, steps and payloads."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from worldflow.worlds._events import (
    AnyEvent,
    HookCreated,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunStarted,
    StepCreated,
    StepStarted,
    WaitCreated,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import EventResult, World
from worldflow.worlds._records import ErrorInfo, Payload, WorkflowRun

__all__ = [
    "TERMINAL_EVENTS",
    "SuiteBase",
    "WorldFactory",
    "error_info",
    "event_types",
    "new_run",
    "payload",
    "start_step",
]

WorldFactory = Callable[[Path], AbstractAsyncContextManager[World]]
"""Opens a fresh, empty world in the given scratch directory, and closes it on exit.

A world that needs no directory (memory, remote to a fresh server) ignores the path.
"""


class SuiteBase:
    """Marks every test as an anyio (asyncio) test; subclasses supply the ``world`` fixture."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"


def payload(value: Any) -> Payload:
    """A JSON payload holding ``value``."""
    return msgspec.Raw(msgspec.json.encode(value))


def error_info(message: str = "boom") -> ErrorInfo:
    """A recorded error."""
    return ErrorInfo(name="RuntimeError", message=message)


TERMINAL_EVENTS: dict[str, Callable[[str], AnyEvent]] = {
    "completed": lambda r: RunCompleted(run_id=r, output=payload("done")),
    "failed": lambda r: RunFailed(run_id=r, error=error_info()),
    "cancelled": lambda r: RunCancelled(run_id=r, reason="stop"),
}
"""Events that end a run, built for a given run id."""


def event_types(events: list[AnyEvent]) -> list[str]:
    """The ``type`` of each event, in order."""
    return [e.type for e in events]


async def new_run(
    world: World,
    run_id: str | None = None,
    *,
    workflow_name: str = "wf",
    resource_id: str | None = None,
    metadata: dict[str, str] | None = None,
    started: bool = False,
) -> WorkflowRun:
    """Create a run (and start it when ``started``); return its view."""
    run_id = run_id or new_id("wrun")
    events: list[Any] = [
        RunCreated(
            run_id=run_id,
            workflow_name=workflow_name,
            input=payload({"run": run_id}),
            resource_id=resource_id,
            metadata=metadata or {},
        )
    ]
    if started:
        events.append(RunStarted(run_id=run_id))
    result = await world.append(run_id, events)
    return result.run


async def start_step(world: World, run_id: str, step_id: str | None = None) -> str:
    """Create a step and start its first attempt; return its id."""
    step_id = step_id or new_id("step")
    await world.append(
        run_id,
        [
            StepCreated(run_id=run_id, correlation_id=step_id, step_name="s", input=payload(1)),
            StepStarted(run_id=run_id, correlation_id=step_id),
        ],
    )
    return step_id


async def add_hook(
    world: World, run_id: str, token: str, hook_id: str | None = None
) -> EventResult:
    """Append a ``hook_created`` for ``token``; return the append's result."""
    hook_id = hook_id or new_id("hook")
    return await world.append(
        run_id, [HookCreated(run_id=run_id, correlation_id=hook_id, token=token)]
    )


async def add_wait(world: World, run_id: str, wait_id: str | None = None) -> str:
    """Append a ``wait_created`` (a named-event wait); return its id."""
    wait_id = wait_id or new_id("wait")
    await world.append(
        run_id, [WaitCreated(run_id=run_id, correlation_id=wait_id, event_name="go")]
    )
    return wait_id
