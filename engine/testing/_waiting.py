"""Waiting, in a test, until a run is blocked on something; then moving it on.

What a run waits for is read from its log, not from an engine's memory: an observer replays
the log into its own workflow instance (pure, no side effects) and reads
:attr:`Progress.blocked_on` once the log is *settled* (the code owes no command the engine has
not appended yet), so the answer is what the engine's live instance will see. Between checks
it waits on the world's notifications for the run (``wait_for_run``), never by polling.
Timeouts here are in real seconds (a safety net against a hung test): on a virtual clock a
run may legitimately sleep through days of virtual time before it blocks where you expect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worldflow._registry import Registry
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow._runtime.views import HookInfo
from worldflow.testing._clock import VirtualClock

if TYPE_CHECKING:
    from worldflow._runtime.run import Run

__all__ = [
    "Blocked",
    "raise_event_when_waiting",
    "resume_hook_when_waiting",
    "skip_sleep",
    "wait_until_blocked",
]

_PAGE = 1000
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Blocked:
    """A run at rest: what its code waits for.

    Attributes:
        run_id: The run.
        blocked_on: What the code waits for, e.g. ``["hook approve:o-1", "sleep until
            2024-01-02T00:00:00Z"]`` (the engine's ``Progress.blocked_on``).
        waits: ``(wait id, resume_at)`` of its pending timers, earliest first.
        pending_steps: Ids of its steps that have no result yet.
        suspended: Whether the run is suspended.
        last_seq: The last event of the log at that moment.
    """

    run_id: str
    blocked_on: list[str]
    waits: list[tuple[str, datetime]]
    pending_steps: list[str]
    suspended: bool
    last_seq: int


def _matcher(
    hook: str | None, event: str | None, sleep: bool, step: str | None, on: str | None
) -> tuple[str, Callable[[str], bool]]:
    tests: list[tuple[str, Callable[[str], bool]]] = []
    if hook is not None:
        tests.append((f"hook {hook!r}", lambda line: line == f"hook {hook}"))
    if event is not None:
        tests.append((f"event {event!r}", lambda line: line == f"event {event}"))
    if sleep:
        tests.append(("a sleep", lambda line: " until " in line and line.endswith("Z")))
    if step is not None:

        def is_step(line: str) -> bool:
            name = line.removeprefix("step ").split(" (suspended", 1)[0]
            short = name.rpartition(":")[2].rpartition(".")[2]
            return line.startswith("step ") and step in (name, short)

        tests.append((f"step {step!r}", is_step))
    if on is not None:
        tests.append((repr(on), lambda line: on in line))
    if not tests:
        return "anything", lambda line: True
    if len(tests) > 1:
        raise TypeError("wait_until_blocked() takes one of hook=, event=, sleep=, step=, on=")
    return tests[0]


async def _observe(run: Run) -> tuple[WorkflowInstance, Any]:
    engine = run._engine
    view = await engine.world.get_run(run.run_id)
    registry = getattr(engine, "registry", None)  # a Client has none: the process's workflows
    if not isinstance(registry, Registry):
        registry = Registry()
    definition = registry.workflow(view.workflow_name)
    return WorkflowInstance(definition, view, registry=registry), engine.world


async def _catch_up(instance: WorkflowInstance, world: Any, run_id: str) -> Progress:
    progress = instance.progress()
    while True:
        page = await world.list_events(run_id, after_seq=instance.last_seq, limit=_PAGE)
        if page.items:
            progress = instance.feed(page.items)
        if not page.has_more:
            return progress


async def wait_until_blocked(
    run: Run,
    *,
    hook: str | None = None,
    event: str | None = None,
    sleep: bool = False,
    step: str | None = None,
    on: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Blocked:
    """Wait until ``run`` is at rest and waiting for the given thing (any thing if none given).

    Args:
        run: The run (``await engine.start(...)`` or ``engine.get_run(...)``).
        hook: A hook's token (``create_hook(token=...)``).
        event: A named event (``wait_for_event(name)``).
        sleep: Any durable timer (``sleep``, or ``asyncio.timeout`` in the body).
        step: A step's registered name, or its last part (``"charge"`` for
            ``"shop.orders:charge"``).
        on: Any text of a ``blocked_on`` line (for child workflows, webhooks...).
        timeout: Real seconds before giving up with ``TimeoutError`` (``None``: no limit).

    Returns:
        What the run waits for (:class:`Blocked`).

    Raises:
        AssertionError: The run ended before it blocked there (the message says how).
        TimeoutError: It did not block there in time (the message says where it is).

    Example::

        run = await engine.start(approval, "o-1")
        await wait_until_blocked(run, hook="approve:o-1")
        await engine.resume_hook("approve:o-1", {"ok": True})
    """
    what, matches = _matcher(hook, event, sleep, step, on)
    instance, world = await _observe(run)
    progress = instance.progress()
    try:
        async with asyncio.timeout(timeout):
            while True:
                progress = await _catch_up(instance, world, run.run_id)
                if progress.finished:
                    status = (await world.get_run(run.run_id)).status
                    error = f" ({progress.error})" if progress.error else ""
                    raise AssertionError(
                        f"run {run.run_id} ended ({status}{error}) before it was blocked on {what}"
                    )
                settled = not progress.commands
                if settled and any(matches(line) for line in progress.blocked_on):
                    return Blocked(
                        run_id=run.run_id,
                        blocked_on=list(progress.blocked_on),
                        waits=sorted(progress.waits, key=lambda w: w[1]),
                        pending_steps=list(progress.pending_steps),
                        suspended=progress.suspended,
                        last_seq=instance.last_seq,
                    )
                # Returns at once if the log grew since the read: nothing is missed.
                await world.wait_for_run(run.run_id, after_seq=instance.last_seq)
    except TimeoutError:
        raise TimeoutError(
            f"run {run.run_id} was not blocked on {what} within {timeout}s; it is blocked on "
            f"{progress.blocked_on or 'nothing'}"
            + (" and owes commands the engine has not appended" if progress.commands else "")
        ) from None
    finally:
        instance.close()


async def resume_hook_when_waiting(
    run: Run, token: str, payload: Any = None, *, timeout: float | None = DEFAULT_TIMEOUT
) -> HookInfo:
    """Wait until ``run`` waits on the hook ``token``, then send it ``payload``."""
    await wait_until_blocked(run, hook=token, timeout=timeout)
    return await run._engine.resume_hook(token, payload)


async def raise_event_when_waiting(
    run: Run, name: str, payload: Any = None, *, timeout: float | None = DEFAULT_TIMEOUT
) -> None:
    """Wait until ``run`` waits for the event ``name``, then raise it with ``payload``.

    (An event raised earlier is kept for the run anyway; use this to test the moment.)
    """
    await wait_until_blocked(run, event=name, timeout=timeout)
    await run._engine.raise_event(run.run_id, name, payload)


async def skip_sleep(
    run: Run, clock: VirtualClock, *, timeout: float | None = DEFAULT_TIMEOUT
) -> datetime:
    """Wait until ``run`` sleeps, then move ``clock`` to the end of its earliest timer.

    For a clock made with ``auto_advance=False``; returns the time the clock moved to.
    """
    blocked = await wait_until_blocked(run, sleep=True, timeout=timeout)
    at = blocked.waits[0][1]
    await clock.advance_to(at)
    return at
