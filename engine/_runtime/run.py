"""``Run``: a handle on one workflow run, and ``RunInfo``, its decoded snapshot.

A handle holds nothing but the run id and the engine; every call reads the world afresh, so
a handle made with ``engine.get_run(run_id)`` in another process sees the same run.
``result()`` and ``events()`` wait on the world's notifications (``wait_for_run``), never
poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from worldflow import _serde
from worldflow._runtime.step_info import stream_name
from worldflow._runtime.views import EventInfo, event_info
from worldflow.errors import (
    RunNotFoundError,
    StreamNotFoundError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from worldflow.worlds import ErrorInfo, RunStatus, WorkflowRun
from worldflow.worlds._clock import Clock, SystemClock
from worldflow.worlds._events import RUN_TERMINAL_EVENT_TYPES

if TYPE_CHECKING:
    from worldflow._runtime.client import Client

__all__ = ["Run", "RunInfo", "run_info"]

_EVENTS_PAGE = 500


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A run as a client sees it: status, timestamps, and its payloads decoded.

    Attributes:
        run_id: The run's id.
        workflow_name: The registered name of its workflow.
        status: Where the run is (``pending`` ... ``completed``, ``failed``, ``cancelled``).
        input: The workflow's arguments as recorded (decoded).
        output: What the workflow returned (or what ``cancel`` gave as output); ``None`` before.
        error: The recorded error of a failed run.
        resource_id: The resource (user, tenant) the run was started for.
        metadata: The run's string metadata.
        state: The workflow state (``set_state``), decoded.
        parent_run_id: The parent's run id, for a child workflow.
        cancel_reason: Why the run was cancelled, when it was.
        created_at: When ``start`` created it.
        started_at: When a worker first drove it.
        completed_at: When it reached a terminal state.
        updated_at: When its log last grew.
        last_seq: The ``seq`` of the newest event in its log.
        corrupt: Set when the run's stored log is damaged: what is wrong and where (the run
            is listed, but reading or driving it raises ``CorruptLogError``).
        forked_from: The run this one was forked (or rerun) from; the other way round,
            ``list_runs(forked_from=...)`` lists a run's forks.
        forked_from_step: The source's step the fork ran again (``None``: from the start).
        start_at: Not before this time (``start(..., delay=)``): a delayed run is
            ``pending`` until then.
        priority: Its ``start(..., priority=)``: higher goes first for permits.
    """

    run_id: str
    workflow_name: str
    status: RunStatus
    input: Any
    output: Any
    error: ErrorInfo | None
    resource_id: str | None
    metadata: dict[str, str]
    state: Any
    parent_run_id: str | None
    cancel_reason: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    last_seq: int
    corrupt: str | None = None
    forked_from: str | None = None
    forked_from_step: str | None = None
    start_at: datetime | None = None
    priority: int = 0


def run_info(run: WorkflowRun) -> RunInfo:
    """Decode a run view's payloads into a :class:`RunInfo`."""
    return RunInfo(
        run_id=run.run_id,
        workflow_name=run.workflow_name,
        status=run.status,
        input=_serde.decode(run.input),
        output=_serde.decode(run.output),
        error=run.error,
        resource_id=run.resource_id,
        metadata=dict(run.metadata),
        state=_serde.decode(run.state),
        parent_run_id=run.parent_run_id,
        cancel_reason=run.cancel_reason,
        created_at=run.created_at,
        started_at=run.started_at,
        completed_at=run.completed_at,
        updated_at=run.updated_at,
        last_seq=run.last_seq,
        corrupt=run.corrupt,
        forked_from=run.forked_from,
        forked_from_step=run.forked_from_step,
        start_at=run.start_at,
        priority=run.priority,
    )


def outcome(run: WorkflowRun) -> Any:
    """The run's decoded output, or the error ``Run.result()`` raises for it."""
    if run.status is RunStatus.COMPLETED:
        return _serde.decode(run.output)
    if run.status is RunStatus.FAILED:
        err = run.error
        name = err.name if err else "Error"
        message = err.message if err else ""
        raise WorkflowFailedError(
            f"run {run.run_id} ({run.workflow_name}) failed: {name}: {message}",
            run_id=run.run_id,
            error_name=name,
        )
    if run.status is RunStatus.CANCELLED:
        reason = f": {run.cancel_reason}" if run.cancel_reason else ""
        raise WorkflowCancelledError(
            f"run {run.run_id} ({run.workflow_name}) was cancelled{reason}"
        )
    raise AssertionError(f"run {run.run_id} is not terminal ({run.status})")


class Run:
    """A handle on one run: read its state, wait for its result, steer it.

    >>> run = await engine.start(checkout, "o-1")  # doctest: +SKIP
    >>> await run.result(timeout=30)  # doctest: +SKIP
    """

    __slots__ = ("_engine", "run_id")

    def __init__(self, engine: Client, run_id: str) -> None:
        self._engine = engine
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"Run({self.run_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)

    async def status(self) -> RunStatus:
        """The run's current status. Unknown run → ``RunNotFoundError``."""
        return (await self._engine.world.get_run(self.run_id)).status

    async def info(self) -> RunInfo:
        """A fresh snapshot of the run with its payloads decoded."""
        return run_info(await self._engine.world.get_run(self.run_id))

    async def exists(self) -> bool:
        """Whether the world knows this run (purged runs do not exist)."""
        try:
            await self._engine.world.get_run(self.run_id)
        except RunNotFoundError:
            return False
        return True

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the run ends and return what the workflow returned.

        Waits on the world's notifications (no polling); ``timeout`` is measured on the
        engine's clock.

        Raises:
            WorkflowFailedError: the run failed; ``error_name`` is the original error's class.
            WorkflowCancelledError: the run was cancelled.
            TimeoutError: ``timeout`` seconds passed first (the run goes on).
        """
        # Waits first, then reads the run once: a world that knows the run goes on (or that
        # this process committed its end) answers the wait without a read. Unknown run:
        # the wait raises RunNotFoundError.
        world = self._engine.world
        if timeout is None:
            return outcome(await self._until_terminal(0))
        # One timer for the whole wait (not one per wake-up: the run's log grows many times
        # before it ends, and each growth wakes the waiter). It cancels this task, as
        # asyncio.timeout does; on the system clock it is a plain loop timer, otherwise a
        # task sleeping on the engine's clock (so a virtual clock governs it).
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        clock = self._engine.clock
        stop: Callable[[], object]
        if type(clock) is SystemClock:
            stop = loop.call_later(max(0.0, timeout), expire).cancel
        else:
            stop = loop.create_task(_after_sleep(clock, timeout, expire)).cancel
        try:
            run = await self._until_terminal(0)
        except asyncio.CancelledError:
            if not expired or task.uncancel() > 0:
                raise
            run = await world.get_run(self.run_id)
            if not run.status.is_terminal:  # a run already ended never times out
                raise TimeoutError(
                    f"run {self.run_id} did not finish within {timeout}s (status: {run.status})"
                ) from None
        finally:
            stop()
        return outcome(run)

    async def _until_terminal(self, after_seq: int) -> WorkflowRun:
        # Woken once, by the run's end, not by each of its appends: one read of the run
        # after the wait (a world's bounded re-read may wake it early: then it waits again).
        world = self._engine.world
        while True:
            await world.wait_for_run(self.run_id, after_seq=after_seq, terminal=True)
            run = await world.get_run(self.run_id)
            if run.status.is_terminal:
                return run
            after_seq = run.last_seq

    async def events(self, *, after_seq: int = 0) -> AsyncIterator[EventInfo]:
        """The run's events from ``after_seq`` on, live, until the run's terminal event; each
        an :class:`~worldflow.EventInfo`, its payloads decoded."""
        world = self._engine.world
        after = after_seq
        while True:
            page = await world.list_events(self.run_id, after_seq=after, limit=_EVENTS_PAGE)
            for event in page.items:
                after = event.seq
                yield event_info(event)
                if event.type in RUN_TERMINAL_EVENT_TYPES:
                    return
            if not page.has_more:
                await world.wait_for_run(self.run_id, after_seq=after)

    async def readable(self, namespace: str | None = None, *, start: int = 0) -> AsyncIterator[Any]:
        """The values steps wrote with ``get_writable(namespace)``, decoded, live.

        Ends when the stream is closed (the engine closes a run's streams when it ends). A
        finished run that never wrote to this stream yields nothing.
        """
        world = self._engine.world
        name = stream_name(namespace)
        try:
            async for chunk in world.read_stream(self.run_id, name, start=start, follow=True):
                yield _serde.decode(chunk.data)
        except StreamNotFoundError:
            if not (await world.get_run(self.run_id)).status.is_terminal:
                raise

    async def cancel(self, reason: str | None = None, *, output: Any = None) -> None:
        """Cancel the run (see :meth:`Engine.cancel`)."""
        await self._engine.cancel(self.run_id, reason, output=output)

    async def suspend(self, reason: str | None = None) -> None:
        """Pause the run (see :meth:`Engine.suspend`)."""
        await self._engine.suspend(self.run_id, reason)

    async def resume(self) -> None:
        """Unpause the run (see :meth:`Engine.resume`)."""
        await self._engine.resume(self.run_id)

    def _engine_verb(self, name: str) -> Any:
        verb = getattr(self._engine, name, None)
        if verb is None:
            raise TypeError(
                f"{name}() needs the workflow's code: call it on a handle from an Engine "
                "that serves the run's workflow, not from a Client"
            )
        return verb

    async def unstall(self) -> RunStatus:
        """Replay the stalled run against the engine's code (see :meth:`Engine.unstall`)."""
        status: RunStatus = await self._engine_verb("unstall")(self.run_id)
        return status

    async def fail(self, reason: str | None = None) -> None:
        """Fail the stalled run for good (see :meth:`Engine.fail`)."""
        await self._engine_verb("fail")(self.run_id, reason)

    async def resume_step(self, step: str, data: Any = None) -> None:
        """Resume a suspended step of this run (see :meth:`Engine.resume_step`)."""
        await self._engine.resume_step(self.run_id, step, data)

    async def raise_event(self, name: str, payload: Any = None) -> None:
        """Raise a named event for this run (see :meth:`Engine.raise_event`)."""
        await self._engine.raise_event(self.run_id, name, payload)


async def _after_sleep(clock: Clock, seconds: float, then: Callable[[], None]) -> None:
    await clock.sleep(max(0.0, seconds))
    then()
