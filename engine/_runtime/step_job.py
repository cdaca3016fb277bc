"""What the driver and the step runner share about one step call being executed here: the
:class:`StepJob` (the call, its attempts so far, its task and its cancellation) and the
:class:`Limiter` that caps attempts running at once (taken without waiting when the driver
records a first attempt with the step's creation).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worldflow.worlds import NULL, Payload

if TYPE_CHECKING:
    from worldflow._replay.instance import WorkflowMetadata
    from worldflow.worlds._clock import Clock

__all__ = ["Limiter", "StepJob", "release"]


def release(limiters: list[Limiter] | None) -> None:
    """Give back limits taken with :meth:`Limiter.try_acquire` / ``acquire``."""
    if limiters:
        for limiter in limiters:
            limiter.release()


class Limiter:
    """A counting limit that can also be taken without waiting (:meth:`try_acquire`).

    The driver reserves a step's limits *before* it appends the step's creation, so it can
    record ``step_started`` in the same batch and run the step at once; ``asyncio.Semaphore``
    has no synchronous acquire, hence this small one (FIFO, cancellation-safe).
    """

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: int) -> None:
        self._value = value
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        """Take one unit if one is free now and nobody is queued for it."""
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take one unit, waiting in line for it."""
        if self.try_acquire():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a unit while being cancelled: give it back
            raise
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def release(self) -> None:
        """Give one unit back (to the first in line, if any)."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._value += 1


class StepJob:
    """One step call of a run being executed in this process (until its result is recorded).

    Attributes:
        run_id / step_id / step_name / input: The call, as its ``step_created`` recorded it.
        attempt: Attempts started so far (``step_started`` events seen).
        retry_after: Not before this time (after a ``step_retrying``).
        resume_data: What ``resume_step`` sent, for ``get_resume_data()``.
        reserved: The limits the driver took for this job when it recorded ``step_started``
            itself (the first attempt then starts without another append).
    """

    __slots__ = (
        "attempt",
        "cancelled",
        "hurried",
        "in_user_code",
        "input",
        "interrupted",
        "lost",
        "on_run_end",
        "orphaned",
        "own_cancels",
        "reserved",
        "resume_data",
        "retry_after",
        "run_id",
        "step_id",
        "step_name",
        "task",
        "timed_out",
        "workflow",
    )

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        step_name: str,
        input: Payload,
        workflow: WorkflowMetadata,
        attempt: int = 0,
        retry_after: datetime | None = None,
        resume_data: Payload = NULL,
        reserved: list[Limiter] | None = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.step_name = step_name
        self.input = input
        self.workflow = workflow
        self.attempt = attempt
        self.lost = 0  # attempts lost to crashes, and cut short by a stopping engine:
        self.interrupted = 0  # neither counts against max_retries (from the step's view)
        self.retry_after = retry_after
        self.resume_data = resume_data
        self.reserved = reserved
        self.task: asyncio.Task[Any] | None = None
        self.in_user_code = False
        self.cancelled = False
        self.timed_out = False
        self.own_cancels = 0  # task.cancel() calls made by the engine (run cancel, timeout)
        self.hurried: asyncio.Event | None = None  # set while backing off: retry_now() wakes it
        # While an attempt holds world permits: called when its run ends first (the permits
        # lapse at the world while the attempt, a thread maybe, still runs).
        self.on_run_end: Callable[[], None] | None = None
        self.orphaned = False

    def hurry(self) -> None:
        """``step_woken`` (``retry_now``): stop backing off and start the next attempt now."""
        self.retry_after = None
        if self.hurried is not None:
            self.hurried.set()

    async def back_off(self, clock: Clock) -> None:
        """Sleep until ``retry_after`` on ``clock``, or until :meth:`hurry`."""
        if self.retry_after is None:
            return
        delay = (self.retry_after - clock.now()).total_seconds()
        if delay <= 0:
            return
        self.hurried = asyncio.Event()
        sleeper = asyncio.ensure_future(clock.sleep(delay))
        woken = asyncio.ensure_future(self.hurried.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()
            self.hurried = None

    def cancel(self) -> None:
        """Stop the job without recording anything (its run was cancelled)."""
        self.cancelled = True
        on_run_end, self.on_run_end = self.on_run_end, None
        if on_run_end is not None:
            self.orphaned = True
            on_run_end()
        self._interrupt()

    def time_out(self) -> None:
        """The attempt ran past the step's timeout: interrupt it (a retryable failure)."""
        if self.in_user_code:
            self.timed_out = True
            self._interrupt()

    def _interrupt(self) -> None:
        task = self.task
        # Interrupt only the user's function: a world append in flight must finish (or
        # fail) on its own, or a half-done write could be abandoned.
        if task is not None and self.in_user_code and not task.done():
            self.own_cancels += 1
            task.cancel()

    def absorb_cancels(self) -> bool:
        """Take back the engine's own cancellations of the task; False if someone else
        (engine shutdown) cancelled it too, so the ``CancelledError`` must go on."""
        task = self.task
        if task is None:
            return True
        while self.own_cancels:
            self.own_cancels -= 1
            task.uncancel()
        return task.cancelling() == 0

    def is_cancelled(self) -> bool:
        """Whether :meth:`cancel` was called (re-read after every ``await``)."""
        return self.cancelled
