"""Step execution: attempts, retries with backoff, timeouts, flow control, cancellation.

One :class:`StepJob` runs one step call of a run in this process until the step's result is
recorded, the step suspends, the run ends, or the engine stops. Each attempt appends
``step_started`` first (so a crash mid-attempt is visible: the next start counts it *lost*),
runs the function with its :mod:`~worldflow._runtime.step_info` set, then appends exactly one
of ``step_completed``, ``step_retrying``, ``step_failed`` or ``step_suspended`` (or, when the
engine stops during the attempt, ``step_interrupted``). Lost and interrupted attempts do not
count against ``max_retries``; lost ones have their own limit (``max_lost_attempts``).
Execution is at-least-once (a crash after ``step_started`` runs the attempt again after
recovery); the recorded result is exactly-once because the world refuses a second result
(``EntityConflictError``: someone else recorded first, which is fine).

A step with world-held limits (``@step(concurrency=, rate_limit=)``) takes its permits from
the world (:class:`~worldflow._runtime.flow.FlowGate`) before each attempt, waiting its turn,
and gives the concurrency permit back after it (a ``def`` step's thread that outlives its
run keeps its place: see :meth:`FlowGate.orphan`); the engine's own cap on attempts at once
(``max_concurrent_steps``) is a per-process limit on top.

A job cancelled by ``Engine.cancel`` records nothing: the run is over, and a ``CancelledError``
is not the step's failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from worldflow import _serde
from worldflow._durations import parse_duration
from worldflow._runtime.step_info import (
    StepContext,
    StepSuspension,
    reset_current_step,
    set_current_step,
)
from worldflow._runtime.step_job import Limiter, StepJob, release
from worldflow.errors import (
    DiskFullError,
    EntityConflictError,
    FatalError,
    InvalidEventError,
    RetryableError,
    RunNotFoundError,
    RunOwnedElsewhereError,
    RunTerminalError,
    SerializationError,
    StepNotFoundError,
    StepNotRegisteredError,
    WorldflowError,
)
from worldflow.worlds import (
    AnyEvent,
    ErrorInfo,
    Fence,
    StepCompleted,
    StepFailed,
    StepInterrupted,
    StepRetrying,
    StepStarted,
    StepSuspended,
)

if TYPE_CHECKING:
    from worldflow._limits import PermitAsk
    from worldflow._registry import Registry, StepDefinition
    from worldflow._runtime.flow import FlowGate
    from worldflow.worlds import EventResult, World
    from worldflow.worlds._clock import Clock

__all__ = ["StepRunner", "error_info"]

log = logging.getLogger("worldflow.engine")

_STORE_RETRY_FIRST = 0.05
_STORE_RETRY_MAX = 5.0
"""Seconds between tries to store an attempt's outcome on a full disk (doubling)."""

_TRACE_LIMIT = 8000
_INTERRUPT_WAIT = 0.25  # clock seconds a stopping engine waits to record a cut-short attempt


def error_info(exc: BaseException) -> ErrorInfo:
    """How a step's exception is recorded: class name, message, code, traceback."""
    code = exc.code if isinstance(exc, WorldflowError) else None
    message = exc.message if isinstance(exc, WorldflowError) else str(exc)
    stack = "".join(traceback.format_exception(exc))[-_TRACE_LIMIT:]
    return ErrorInfo(name=type(exc).__name__, message=message, code=code, stack=stack)


def _retry_at(value: Any, now: datetime) -> datetime | None:
    """Read ``RetryableError(retry_after=...)``: seconds, duration text, timedelta, datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return now + parse_duration(value)
    except (TypeError, ValueError):
        log.warning("ignoring an unreadable RetryableError(retry_after=%r)", value)
        return None


async def _in_thread(
    ctx: StepContext, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run a ``def`` step in the default executor; a cancel (timeout, run cancelled, engine
    stopping) marks the attempt cancelled for the thread to see, and waits for the thread to
    end before it goes on, so the step's concurrency slot is held while the thread runs."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    future = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        ctx.cancel()
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                ctx.cancel()  # cancelled again (shutdown rounds): the thread still runs
        if not future.cancelled():
            future.exception()  # retrieved: the attempt's cancel is what counts
        raise


class _Outcome:
    __slots__ = ("event", "retry_at")

    def __init__(self, event: AnyEvent | None, retry_at: datetime | None = None) -> None:
        self.event = event  # None: nothing to record (cancelled)
        self.retry_at = retry_at


Deliver = Callable[["StepJob", list[AnyEvent], bool, "list[StepJob] | None"], Awaitable[None]]
"""``deliver(job, stored_events, final, handoff)``: hand a job's stored events to the run's
driver; ``final`` when the job is over (drive the run now, handing the caller the next step
through ``handoff``)."""


Complete = Callable[
    ["StepJob", "StepCompleted | StepFailed", "list[StepJob] | None"], Awaitable[bool]
]
"""``complete(job, result, handoff)``: record a final result together with what the run
does next (one append); False when it did not (the caller appends the result alone)."""


class StepRunner:
    """Runs :class:`StepJob` s: limits, attempts, retries, recording.

    Args:
        world: Where results are recorded.
        registry: Where step names are looked up.
        clock: Time for backoff and ``retry_after``.
        deliver: Called with the stored events of each append (``wake`` after a final one).
        max_concurrent: Attempts running at once across the engine.
        services: Extra objects put on each step's context (the builtin steps use them).
        fence: The fence of a run's owner-only appends (``step_started``).
        flow: Where steps with world-held limits take their permits.
        complete: Records a final result fused with the run's next decisions (the
            driver's fast path); when it returns False the result is appended alone.
    """

    def __init__(
        self,
        *,
        world: World,
        registry: Registry,
        clock: Clock,
        deliver: Deliver,
        max_concurrent: int,
        flow: FlowGate,
        services: Any = None,
        fence: Callable[[str], Fence | None] = lambda run_id: None,
        complete: Complete | None = None,
    ) -> None:
        self._world = world
        self._flow = flow
        self._complete = complete
        self._fence = fence
        self._registry = registry
        self._clock = clock
        self._deliver = deliver
        self._slots = Limiter(max_concurrent)
        self._local = [self._slots]  # shared and never changed: release() only reads it
        self._services = services

    def try_reserve(self, step_name: str) -> list[Limiter] | None:
        """Take the engine's slot for a first attempt of ``step_name`` now, or ``None`` if
        it must wait (or is not registered: its job records the failure; or has world-held
        limits: its job asks the world for its permits first)."""
        definition = self._registry.find_step(step_name)
        if definition is None or definition.limits is not None:
            return None
        return self._local if self._slots.try_acquire() else None

    def _asks(self, job: StepJob, definition: StepDefinition) -> list[PermitAsk]:
        limits = definition.limits
        assert limits is not None
        args: tuple[Any, ...] | None = None
        kwargs: dict[str, Any] | None = None
        if limits.needs_arguments:
            try:
                args, kwargs = definition.decode_input(job.input)
            except (TypeError, SerializationError):
                pass  # the attempt records that failure; the key reads the value as None
        return limits.asks(
            f"{job.run_id}/{job.step_id}",
            args,
            kwargs,
            resource_id=job.workflow.resource_id,
            attempt=job.attempt + 1,
        )

    async def run(self, job: StepJob, handoff: list[StepJob] | None = None) -> None:
        """Execute ``job`` until its outcome is recorded (or it is cancelled).

        ``handoff`` collects the run's next step when the caller will run it itself.
        """
        reserved, job.reserved = job.reserved, None
        try:
            definition = self._registry.step(job.step_name)
        except StepNotRegisteredError as exc:
            release(reserved)
            failed = StepFailed(
                run_id=job.run_id, correlation_id=job.step_id, error=error_info(exc)
            )
            await self._record(job, failed, True, handoff)
            return
        if job.is_cancelled():
            release(reserved)
            return
        while not job.is_cancelled():
            held = reserved
            reserved = None
            permits: list[PermitAsk] | None = None
            try:
                if held is None:
                    await job.back_off(self._clock)
                    if definition.limits is not None:
                        permits = self._asks(job, definition)
                        try:
                            await self._flow.wait_for(
                                permits, run_id=job.run_id, priority=job.workflow.priority
                            )
                        except (RunTerminalError, RunNotFoundError):
                            permits = None
                            return  # the run ended while the attempt waited its turn
                        job.on_run_end = functools.partial(self._flow.orphan, permits)
                    held = []
                    for limiter in self._local:
                        await limiter.acquire()
                        held.append(limiter)
                    if job.is_cancelled():
                        return
                    outcome = await self._attempt(job, definition)
                else:  # the driver recorded this attempt's step_started with the creation
                    job.attempt += 1
                    outcome = await self._execute(job, definition)
            finally:
                release(held)
                job.on_run_end = None
                orphaned, job.orphaned = job.orphaned, False
                if permits:
                    await self._flow.release(permits, orphaned=orphaned)
            if outcome is None or outcome.event is None:
                return
            final = not isinstance(outcome.event, StepRetrying)
            if not await self._store(job, outcome.event, final, handoff) or final:
                return
            job.retry_after = outcome.retry_at

    async def _store(
        self, job: StepJob, event: AnyEvent, final: bool, handoff: list[StepJob] | None
    ) -> bool:
        """:meth:`_record` an attempt's outcome until the world takes it.

        The attempt ran: if its outcome is not stored, the run's next drive would start the
        step again, its function would run twice, and the world would count the attempt as
        lost to a crash (a full disk failed steps with "lost 4 attempts to crashes"). So a
        full disk is waited out (writes are taken again once they fit), and a result the
        world refuses (over its size limit) becomes the step's failure, saying why.
        """
        delay = _STORE_RETRY_FIRST
        while True:
            try:
                return await self._record(job, event, final, handoff)
            except DiskFullError as exc:
                log.warning(
                    "run %s: step %s: its outcome could not be stored (%s); trying again in %.2fs",
                    job.run_id,
                    job.step_id,
                    exc.message,
                    delay,
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, _STORE_RETRY_MAX)
            except InvalidEventError as exc:
                if not isinstance(event, StepCompleted):
                    raise
                refused = FatalError(
                    f"step {job.step_name!r} returned a value the world cannot store: {exc.message}"
                )
                event = StepFailed(
                    run_id=job.run_id, correlation_id=job.step_id, error=error_info(refused)
                )
                final = True

    async def _record(
        self, job: StepJob, event: AnyEvent, final: bool, handoff: list[StepJob] | None
    ) -> bool:
        """Append one step event; False when the step or run is already over."""
        complete = self._complete
        kind = type(event)
        if (
            final
            and complete is not None
            and (kind is StepCompleted or kind is StepFailed)
            and await complete(job, event, handoff)  # type: ignore[arg-type]
        ):
            return True
        try:
            result = await self._world.append(job.run_id, [event])
        except (RunTerminalError, RunNotFoundError):
            return False  # the run ended (cancelled, purged): nothing more to do
        except (EntityConflictError, StepNotFoundError):
            # Someone else recorded this step's result first: theirs stands.
            await self._deliver(job, [], True, None)
            return False
        await self._deliver(job, result.events, final, handoff)
        return True

    async def _start(self, job: StepJob) -> EventResult | None:
        try:
            return await self._world.append(
                job.run_id,
                [StepStarted(run_id=job.run_id, correlation_id=job.step_id)],
                fence=self._fence(job.run_id),
            )
        except (RunTerminalError, RunNotFoundError):
            return None
        except RunOwnedElsewhereError:
            return None  # taken over: its new owner runs the step
        except (EntityConflictError, StepNotFoundError):
            await self._deliver(job, [], True, None)  # already terminal: let the run move on
            return None

    async def _attempt(self, job: StepJob, definition: StepDefinition) -> _Outcome | None:
        started = await self._start(job)
        if started is None:
            return None
        attempt = job.attempt + 1
        for view in started.steps:
            if view.step_id == job.step_id:
                attempt = view.attempt
                job.lost = view.lost_attempts
                job.interrupted = view.interrupted_attempts
        job.attempt = attempt
        await self._deliver(job, started.events, False, None)
        if job.is_cancelled():
            return None
        return await self._execute(job, definition)

    async def _execute(self, job: StepJob, definition: StepDefinition) -> _Outcome:
        attempt = job.attempt
        options = definition.options
        max_attempts = options.max_retries + 1
        # Attempts the engine cut short (a stop) or lost (a crash) are not the step's failures.
        counted = attempt - job.lost - job.interrupted
        used_up: FatalError | None = None
        if job.lost > options.max_lost_attempts:
            used_up = FatalError(
                f"step {definition.name!r} lost {job.lost} attempts to crashes (the process "
                "running it died before it ended: killed, out of memory, or the step brings "
                f"it down), more than its max_lost_attempts={options.max_lost_attempts}; it "
                "fails rather than crash the engine again"
            )
        elif counted > max_attempts:
            used_up = FatalError(
                f"step {definition.name!r} ran {counted} attempts, more than its "
                f"{max_attempts} (max_retries={options.max_retries})"
            )
        if used_up is not None:
            return _Outcome(
                StepFailed(run_id=job.run_id, correlation_id=job.step_id, error=error_info(used_up))
            )
        loop = asyncio.get_running_loop()
        ctx = StepContext(
            run_id=job.run_id,
            step_id=job.step_id,
            step_name=job.step_name,
            attempt=counted,  # attempts lost to crashes or cut short by a stop do not count
            workflow=job.workflow,
            world=self._world,
            loop=loop,
            resume_data=job.resume_data,
            services=self._services,
        )
        try:
            args, kwargs = definition.decode_input(job.input)
        except (TypeError, SerializationError) as exc:
            return _Outcome(
                StepFailed(run_id=job.run_id, correlation_id=job.step_id, error=error_info(exc))
            )
        token = set_current_step(ctx)
        timeout = definition.options.timeout
        if job.task is None:
            job.task = asyncio.current_task()
        job.timed_out = False
        # The timeout is on the engine's clock (not loop time), so a virtual clock governs it.
        watchdog = None
        if timeout is not None:
            watchdog = loop.create_task(self._watchdog(job, timeout.total_seconds()))
        failure: BaseException | None = None
        event: AnyEvent | None = None
        job.in_user_code = True
        try:
            if definition.is_async:
                value = await definition.fn(*args, **kwargs)
            else:
                value = await _in_thread(ctx, definition.fn, args, kwargs)
            job.in_user_code = False
            event = StepCompleted(
                run_id=job.run_id, correlation_id=job.step_id, result=_serde.encode(value)
            )
        except StepSuspension as suspension:
            event = StepSuspended(
                run_id=job.run_id, correlation_id=job.step_id, payload=suspension.payload
            )
        except asyncio.CancelledError:
            if not (job.cancelled or job.timed_out) or not job.absorb_cancels():
                # The engine is stopping: say the attempt was cut short, so it does not
                # count against max_retries; recovery runs it again.
                await self._interrupted(job)
                raise
        except Exception as exc:  # the step's failure, recorded (never the engine's)
            failure = exc
        finally:
            job.in_user_code = False
            if watchdog is not None:
                watchdog.cancel()
            reset_current_step(token)
        if not job.absorb_cancels():
            # Cancelled after the function returned (it swallowed ours): the engine stops.
            raise asyncio.CancelledError
        if job.cancelled:
            return _Outcome(None)  # Engine.cancel: the run is over, record nothing
        if job.timed_out:
            seconds = timeout.total_seconds() if timeout is not None else 0.0
            failure = TimeoutError(
                f"step {definition.name!r} attempt {counted} timed out after {seconds:g}s"
            )
        if failure is not None or event is None:
            assert isinstance(failure, Exception)
            return self._failure(job, failure, counted, max_attempts, definition)
        return _Outcome(event)

    async def _interrupted(self, job: StepJob) -> None:
        """Record that the stopping engine cut the attempt short (``step_interrupted``: it
        does not count against ``max_retries``). Fenced like ``step_started`` (an engine that
        lost the run must not mark its new owner's attempt), and bounded on the engine's
        clock: a stop never hangs on a world that no longer answers; an attempt left
        unrecorded is counted as lost by the next start."""
        event = StepInterrupted(
            run_id=job.run_id,
            correlation_id=job.step_id,
            reason="the engine stopped during the attempt",
        )
        append = asyncio.ensure_future(
            self._world.append(job.run_id, [event], fence=self._fence(job.run_id))
        )
        timer = asyncio.ensure_future(self._clock.sleep(_INTERRUPT_WAIT))
        try:
            await asyncio.wait((append, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not append.done():
                append.cancel()  # the world did not answer in time
        if not append.done() or append.cancelled() or append.exception() is not None:
            # A closing world, an ended run, a run taken over: the next start counts it lost.
            log.debug("run %s: could not record step %s as interrupted", job.run_id, job.step_id)

    async def _watchdog(self, job: StepJob, seconds: float) -> None:
        await self._clock.sleep(seconds)
        job.time_out()

    def _failure(
        self,
        job: StepJob,
        exc: Exception,
        attempt: int,
        max_attempts: int,
        definition: StepDefinition,
    ) -> _Outcome:
        info = error_info(exc)
        # Retrying cannot fix a bad call or an unencodable result: fail at once.
        fatal = isinstance(exc, (FatalError, SerializationError, StepNotRegisteredError))
        if fatal or attempt >= max_attempts:
            return _Outcome(StepFailed(run_id=job.run_id, correlation_id=job.step_id, error=info))
        now = self._clock.now()
        retry_at = None
        if isinstance(exc, RetryableError):
            retry_at = _retry_at(exc.retry_after, now)
        if retry_at is None:
            delay: timedelta = definition.options.backoff.delay(attempt)
            retry_at = now + delay
        return _Outcome(
            StepRetrying(
                run_id=job.run_id, correlation_id=job.step_id, error=info, retry_after=retry_at
            ),
            retry_at=retry_at,
        )
