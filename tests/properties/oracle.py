"""An independent oracle: what a program run under an :class:`EngineSchedule` must return.

The engine properties compared a crashed run with an undisturbed one, so a bug both runs
share passed them. This module computes the expected outcome from the *meaning* of the
program and of the schedule alone, without the engine, a world or a replay: it runs the
program's nodes as plain asyncio on a loop whose time is virtual, with the outside world of
``engine_runs`` (step durations and failures, hook delays, named events, suspension,
cancellation) played by a small scheduler. The documented rules it follows
(``docs/engine-internals.md``):

* every happening from outside (a step's result, a timer, a hook payload, a named event, a
  child's outcome, suspend / resume / cancel) is delivered **one per idle point**, in the
  order it happened;
* ``run_suspended`` holds every later delivery (cancel and resume excepted) until
  ``run_resumed``, which delivers the held ones first, in the order they happened; the body's
  clock then reads the resume time. Timers that fell due during the suspension are recorded
  only at the resume (the engine does not record a suspended run's timers), so they come
  after the held deliveries, earliest first;
* a named event raised while nobody waits for that name is kept for the next waiter, and
  waiters are served in the order they started waiting;
* a failed step attempt runs again ``retry_after`` seconds later if it raised
  ``RetryableError(retry_after=...)``, else after the step's backoff (``initial * factor **
  (attempt - 1)``, at most ``maximum``); after ``max_retries`` retries, or at a
  ``FatalError``, the step fails with that error's class name; an attempt's time is counted
  from the step's ``step_created``, so an attempt after a retry ends at once;
* an operation the body gave up in the same idle period it asked for it is never recorded
  (so the outside never answers an event wait that was satisfied before it was recorded).

:func:`expected_outcome` returns ``None`` when two outside happenings fall on the same
virtual microsecond (their order is then not defined by the schedule) or the run would end
after ``limit`` virtual seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import selectors
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tests.properties.engine_runs import EngineSchedule
from tests.properties.programs import (
    FLAKY,
    FLAKY_BACKOFF,
    FLAKY_MAX_RETRIES,
    Block,
    Child,
    Event,
    FirstOf,
    Gather,
    Hook,
    HookTimeout,
    HookVsSleep,
    Loop,
    Node,
    Program,
    SetState,
    Sleep,
    Step,
    child_result,
    step_result,
)
from worldflow.testing import DEFAULT_START

__all__ = ["Expected", "expected_outcome"]

_US = 1_000_000


@dataclass(frozen=True)
class Expected:
    """A run's outcome: ``status`` (``completed`` / ``failed`` / ``cancelled``), the output of
    a completed run, the error class name of a failed one, and when it ended (virtual
    seconds after the start). ``attempts``: when each attempt of each step of the run started
    (by step key), for a run where no attempt is cut short."""

    status: str
    output: Any = None
    error_name: str | None = None
    at: float = 0.0
    attempts: dict[str, list[float]] | None = None


class _Ambiguous(Exception):
    """Two outside happenings at the same instant: the schedule does not order them."""


class _Stuck(Exception):
    """Nothing left to happen and the body has not ended."""


class _Failed(Exception):
    """A step or child failure as the body sees it (``StepFailedError`` /
    ``WorkflowFailedError``), with the original error's class name."""

    def __init__(self, kind: str, error_name: str) -> None:
        super().__init__(kind, error_name)
        self.kind = kind
        self.error_name = error_name


def _us(seconds: float) -> int:
    return round(seconds * _US)


class _Selector(selectors.BaseSelector):
    """A selector that never waits: when the loop is idle it asks the scheduler to move."""

    def __init__(self, on_idle: Callable[[], None]) -> None:
        self._map: dict[Any, selectors.SelectorKey] = {}
        self._on_idle = on_idle

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:  # nothing ready and no loop timer: the body is idle
            self._on_idle()
        return []

    def get_map(self) -> Any:
        return self._map


class _World:
    """The scheduler: the outside world's timeline and the run's inbox."""

    def __init__(self, schedule: EngineSchedule, limit: float) -> None:
        self.schedule = schedule
        self.now = 0  # microseconds since the start
        self.limit = _us(limit)
        self.timers: list[tuple[int, int, Callable[[], None], Callable[[], bool]]] = []
        self.numbers = itertools.count()
        self.inbox: deque[tuple[bool, Callable[[], None]]] = deque()
        self.held: list[tuple[bool, Callable[[], None]]] = []
        self.held_timers: list[tuple[int, int, Callable[[], None]]] = []
        self.timer_items: set[int] = set()  # ids of inbox items that are timers
        self.suspended = False
        self.unrecorded: list[_EventWait] = []
        self.seen_times: set[int] = set()

    def at(
        self,
        when: int,
        what: Callable[[], None],
        *,
        through: bool = False,
        live: Callable[[], bool] = lambda: True,
        timer: bool = False,
    ) -> None:
        """Deliver ``what`` at ``when`` (µs); ``through``: also while suspended. A happening
        that is no longer ``live`` then (the timer of a cancelled sleep, a payload for a hook
        the body dropped) does nothing, in the engine too, and cannot tie with another."""

        def arrive() -> None:
            if timer and self.suspended:
                self.held_timers.append((when, next(self.numbers), what))
                return
            self.inbox.append((through, what))

        if when == self.now:  # caused by what happens now (a child without steps): no tie
            self.inbox.append((through, what))
            return
        heapq.heappush(self.timers, (when, next(self.numbers), arrive, live))

    def on_idle(self) -> None:
        """The body is idle: deliver one thing, else end the feed, else move time on."""
        if self.inbox:
            through, what = self.inbox.popleft()
            if self.suspended and not through:
                self.held.append((through, what))
            else:
                what()
            return
        if self.unrecorded:  # the end of a feed: what the body still waits on is recorded
            for wait in self.unrecorded:
                if not wait.future.done():
                    wait.recorded(self)
            self.unrecorded = []
            return
        if not self.timers:
            raise _Stuck
        when, _, arrive, live = heapq.heappop(self.timers)
        if not live():
            return
        if when in self.seen_times:
            raise _Ambiguous(when)
        if when > self.limit:
            raise _Ambiguous("past the limit")
        self.seen_times.add(when)
        self.now = max(self.now, when)
        arrive()

    def resume(self) -> None:
        self.suspended = False
        timers = [(False, what) for _, _, what in sorted(self.held_timers)]
        self.inbox.extendleft(reversed(self.held + timers))
        self.held = []
        self.held_timers = []


class _EventWait:
    def __init__(self, name: str, future: asyncio.Future[Any], auto: bool) -> None:
        self.name = name
        self.future = future
        self.auto = auto

    def recorded(self, world: _World) -> None:
        """Its ``wait_created`` is in the log: the outside answers it 600 s later."""
        if self.auto:
            _raise_event(world, self.name, world.now + _us(600.0003))


def _raise_event(world: _World, name: str, when: int) -> None:
    stamp = DEFAULT_START + timedelta(microseconds=when)
    payload = f"{name}@{stamp:%H:%M:%S}"
    world.at(when, lambda: _Runner.current.deliver_event(name, payload))


class _Runner:
    """The program's body, as plain asyncio against :class:`_World`."""

    current: _Runner

    def __init__(self, program: Program, schedule: EngineSchedule, world: _World, seed: int):
        self.program = program
        self.world = world
        self.seed = seed
        self.trace: list[str] = []
        self.state: list[str] | None = None
        self.durations = dict(schedule.durations)
        self.plans = dict(schedule.failures)
        self.hook_delays = dict(schedule.hook_delays)
        self.retry_after = schedule.retry_after
        self.attempts: dict[str, list[float]] = {}
        self.buffered: dict[str, deque[str]] = {}
        self.waiters: dict[str, deque[_EventWait]] = {}
        self.loop = asyncio.get_running_loop()

    # -- outside happenings ------------------------------------------------------------------

    def deliver_event(self, name: str, payload: str) -> None:
        waiters = self.waiters.get(name)
        while waiters:
            wait = waiters.popleft()
            if not wait.future.done():
                wait.future.set_result(payload)
                return
        self.buffered.setdefault(name, deque()).append(payload)

    def _resolve_at(
        self, when: int, future: asyncio.Future[Any], value: Any, *, timer: bool = False
    ) -> None:
        def resolve() -> None:
            if future.done():
                return
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)

        self.world.at(when, resolve, live=lambda: not future.done(), timer=timer)

    def _step_outcome(
        self, name: str, node: int, created: int, key: str | None = None
    ) -> tuple[int, str | None]:
        """When a step of ``node`` created at ``created`` ends, and its error if it fails."""
        if name == FLAKY:
            max_retries = FLAKY_MAX_RETRIES
            initial, factor, maximum = FLAKY_BACKOFF
        else:
            max_retries, initial, factor, maximum = 20, 0.0, 1.0, 0.0
        took = _us(self.durations.get(node, 1.0) + node / 1000 + 0.0001)
        starts = [created]
        when = created + took
        attempt = 1
        error = None
        for outcome in self.plans.get(node, ()):
            if outcome == "fatal":
                error = "FatalError"
                break
            if attempt > max_retries:
                error = "RetryableError" if outcome == "retry" else "RuntimeError"
                break
            if outcome == "retry":
                when += _us(self.retry_after)
            else:
                when += _us(min(maximum, initial * factor ** (attempt - 1)))
            starts.append(when)
            attempt += 1
        if key is not None:
            self.attempts[key] = [t / _US for t in starts]
        return when, error

    # -- primitives -----------------------------------------------------------------------------

    async def step(self, name: str, key: str, arg: int, node: int) -> str:
        when, error = self._step_outcome(name, node, self.world.now, key)
        future = self.loop.create_future()
        self._resolve_at(when, future, _Failed("step", error) if error else None)
        await future
        return step_result(name, key, arg)

    async def sleep(self, seconds: float) -> None:
        future = self.loop.create_future()
        self._resolve_at(self.world.now + _us(seconds), future, None, timer=True)
        await future

    def hook(self, node: int, key: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = self.loop.create_future()
        delay = self.hook_delays.get(node, 45.0) + node / 1000 + 0.0002
        self._resolve_at(self.world.now + _us(delay), future, f"payload-tok-{key}")
        return future

    async def wait_for_event(self, name: str, timeout: float | None) -> str:
        buffered = self.buffered.get(name)
        if buffered:
            return buffered.popleft()
        future = self.loop.create_future()
        wait = _EventWait(name, future, auto=timeout is None)
        self.waiters.setdefault(name, deque()).append(wait)
        self.world.unrecorded.append(wait)
        if timeout is not None:
            self._resolve_at(self.world.now + _us(timeout), future, TimeoutError(), timer=True)
        result: str = await future
        return result

    async def child(self, node: Child, key: str) -> list[str]:
        when = self.world.now
        error = None
        for i, (name, _) in enumerate(node.calls):
            when, error = self._step_outcome(name, node.node, when, f"{key}/{i}")
            if error is not None:
                break
        future = self.loop.create_future()
        if error is not None:
            # the child run fails with its step's own error (``error_name`` is the original
            # error's class, docs/engine-internals.md), and the parent sees that name
            outcome: Any = _Failed("child", error)
        elif node.fail:
            outcome = _Failed("child", "FatalError")
        else:
            outcome = child_result(key, list(node.calls))
        self._resolve_at(when, future, outcome)
        result: list[str] = await future
        return result

    # -- the nodes (the same shapes as programs._Interpreter) ---------------------------------

    async def block(self, block: Block, path: str) -> list[str]:
        out: list[str] = []
        for node in block:
            out.extend(await self.node(node, path))
        return out

    def emit(self, entry: str) -> list[str]:
        self.trace.append(entry)
        return [entry]

    async def node(self, node: Node, path: str) -> list[str]:
        key = f"n{node.node}{path}"
        match node:
            case Step():
                try:
                    value = await self.step(node.name, key, node.arg + self.seed, node.node)
                except _Failed as exc:
                    if not node.catch:
                        raise
                    return self.emit(f"{key}!{exc.error_name}")
                return self.emit(f"{key}={value}")
            case Sleep():
                await self.sleep(node.seconds)
                return self.emit(f"{key}:slept")
            case Hook():
                payload = await self.hook(node.node, key)
                return self.emit(f"{key}<{payload}")
            case HookVsSleep():
                got = self.hook(node.node, key)
                nap = asyncio.ensure_future(self.sleep(node.seconds))
                try:
                    await asyncio.wait((got, nap), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (got, nap):
                        task.cancel()
                    await asyncio.gather(got, nap, return_exceptions=True)
                if got.cancelled():
                    return self.emit(f"{key}:slept")
                return self.emit(f"{key}<{got.result()}")
            case HookTimeout():
                got = self.hook(node.node, key)
                timer = asyncio.ensure_future(self.sleep(node.seconds))
                try:
                    await asyncio.wait((got, timer), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (got, timer):
                        task.cancel()
                    await asyncio.gather(got, timer, return_exceptions=True)
                if got.cancelled():
                    return self.emit(f"{key}:timeout")
                return self.emit(f"{key}<{got.result()}")
            case Event():
                try:
                    payload = await self.wait_for_event(node.name, node.timeout)
                except TimeoutError:
                    return self.emit(f"{key}:no {node.name}")
                return self.emit(f"{key}<{node.name}:{payload}")
            case SetState():
                state = list(self.state or [])
                self.state = [*state, key]
                return self.emit(f"{key}:state{len(state) + 1}")
            case Child():
                try:
                    result = await self.child(node, key)
                except _Failed as exc:
                    if not node.catch:
                        raise
                    return self.emit(f"{key}!child {exc.error_name}")
                return self.emit(f"{key}=child{result}")
            case Gather():
                parts = await asyncio.gather(
                    *(self.block(b, f"{path}.{i}") for i, b in enumerate(node.branches))
                )
                joined = [entry for part in parts for entry in part]
                return self.emit(f"{key}:gather{[len(p) for p in parts]}{joined}")
            case FirstOf():
                tasks = [
                    asyncio.ensure_future(self.block(b, f"{path}.{i}"))
                    for i, b in enumerate(node.branches)
                ]
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                losers = list(pending)
                for loser in losers:
                    loser.cancel()
                await asyncio.gather(*losers, return_exceptions=True)
                winners = [i for i, branch in enumerate(tasks) if branch in done]
                failures = [tasks[i].exception() for i in winners]
                for error in failures:
                    if error is not None:
                        raise error
                return self.emit(f"{key}:first{winners}")
            case Loop():
                out: list[str] = []
                for i in range(node.times):
                    out.extend(await self.block(node.body, f"{path}@{i}"))
                return out
        raise AssertionError(f"unknown node {node!r}")


async def _run(program: Program, schedule: EngineSchedule, world: _World, seed: int) -> Expected:
    runner = _Runner(program, schedule, world, seed)
    _Runner.current = runner
    body = asyncio.ensure_future(runner.block(program.body, ""))
    ended: list[Expected] = []

    def control(what: str) -> None:
        if what == "suspend":
            world.suspended = True
        elif what == "resume":
            world.resume()
        else:
            ended.append(Expected("cancelled", at=world.now / _US, attempts=runner.attempts))
            body.cancel()

    def running() -> bool:
        return not body.done() and not ended

    def second(seconds: float) -> int:
        return _us(seconds)

    for i, (name, when) in enumerate(schedule.events):
        _raise_event(world, name, second(when + 0.0004 + i / 100_000))
    if schedule.suspend_at is not None:
        start, length = schedule.suspend_at, schedule.suspend_for
        world.at(second(start + 0.00001), lambda: control("suspend"), through=True, live=running)
        world.at(
            second(start + length + 0.00005), lambda: control("resume"), through=True, live=running
        )
    if schedule.cancel_at is not None:
        world.at(
            second(schedule.cancel_at + 0.00003),
            lambda: control("cancel"),
            through=True,
            live=running,
        )
    try:
        await body
    except asyncio.CancelledError:
        if ended:
            return ended[0]
        raise
    except _Failed as exc:
        # A step's or child's failure the body lets through fails the run with the original
        # error's class name (not StepFailedError / WorkflowFailedError): see error_info in
        # engine/_replay/progress.py and the CHANGELOG's entry for it.
        return Expected(
            "failed", error_name=exc.error_name, at=world.now / _US, attempts=runner.attempts
        )
    output = {"trace": runner.trace, "state": runner.state}
    return Expected("completed", output=output, at=world.now / _US, attempts=runner.attempts)


def expected_outcome(
    program: Program, schedule: EngineSchedule, *, seed: int = 0, limit: float = 86_400.0
) -> Expected | None:
    """The outcome the engine must reach for ``program`` under ``schedule`` (crashes and
    evictions change nothing), or ``None`` where the schedule leaves it undefined.

    Runs on a loop of its own, in a thread of its own (callers are often coroutines).
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="oracle") as pool:
        return pool.submit(_expected_outcome, program, schedule, seed, limit).result()


def _expected_outcome(
    program: Program, schedule: EngineSchedule, seed: int, limit: float
) -> Expected | None:
    world = _World(schedule, limit)
    loop = asyncio.SelectorEventLoop(_Selector(world.on_idle))
    try:
        return loop.run_until_complete(_run(program, schedule, world, seed))
    except _Ambiguous:
        return None
    finally:
        _cancel_all(loop)
        loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:

        async def settle() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            loop.run_until_complete(settle())
        except (_Ambiguous, _Stuck):
            pass
