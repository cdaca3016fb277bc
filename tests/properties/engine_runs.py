"""Programs run by the real engine on the memory world, in virtual time, with crashes.

An :class:`EngineSchedule` says how the outside world behaves, in virtual seconds: how long
each step takes (counted from its ``step_created``, so an attempt re-run after a crash ends at
the same moment), which attempts fail, how long after its creation each hook gets its payload,
when named events, a suspension, a cancellation and cache evictions happen, and after which
append the engine process "crashes". Every time has a distinct fractional part, so no two
happenings tie and the order of the log is decided by the schedule alone.

A crash is modelled at the world: the append that reaches the crash point is committed and
never returns, and from then on every call of the old engine fails at once (appends, reads,
leases, acks, heartbeats, the release of its runs: the process is gone, nothing it does
afterwards reaches the world, no answer reaches it). The world declares it dead, as it does
once an engine's ttl lapses, and the test closes what is left of it and enters a new engine
on the same world, which claims the run and recovers it from its log; the restart holds the
virtual clock, so the new engine is up at the instant of the crash. Closing the dead engine is the
harness's cleanup, not something a crashed process does: it must take no virtual time (an
append that hung instead would hold a stopping engine, which bounds its last writes on the
clock, for that long, and the run's later events would all move).

The world is a memory world, or (``durable=True``) a file world with fsync in a scratch
directory; ``consume_queues`` makes the engines take their work from the world's queues too.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tempfile
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from tests.properties.programs import Program, child, definition, set_step_behaviour
from worldflow import (
    Engine,
    EntityConflictError,
    FatalError,
    HookNotFoundError,
    RetryableError,
    RunTerminalError,
    _serde,
    get_step_metadata,
)
from worldflow._registry import Registrable
from worldflow.testing import VirtualClock, fetch_history
from worldflow.worlds import (
    AnyEvent,
    EventRaised,
    FileWorld,
    HookCreated,
    HookReceived,
    MemoryWorld,
    RunCancelled,
    RunResumed,
    RunStatus,
    RunSuspended,
    WaitCreated,
    World,
)

__all__ = ["EngineRun", "EngineSchedule", "run_on_engine"]

_NODE = re.compile(r"^n(\d+)")


@dataclass(frozen=True)
class EngineSchedule:
    """The outside world of one engine run (virtual seconds). ``repr`` builds it.

    Attributes:
        durations: ``(node, seconds)``: how long that node's steps take (default 1).
        failures: ``(node, outcomes)``: failed attempts before success: ``"retry"``
            (``RetryableError(retry_after=retry_after)``), ``"error"`` (a ``RuntimeError``:
            the step's backoff applies) or ``"fatal"``.
        hook_delays: ``(node, seconds)``: a hook gets its payload that long after it was
            created (default 45).
        events: ``(name, at)``: a named event raised ``at`` seconds after the start.
        suspend_at: Suspend the run then, and resume it ``suspend_for`` seconds later.
        suspend_for: See ``suspend_at``.
        cancel_at: Cancel the run then.
        evict_at: Drop the engine's cached instances at these times.
        retry_after: The ``retry_after`` (seconds) of every planned ``"retry"`` failure.
        crash_after: The engine process dies right after this many appends to the world.
        crash_kind: If set, ``crash_after`` counts only appends holding an event of this type
            (``"step_retrying"``: die while a step waits for its retry).
    """

    durations: tuple[tuple[int, float], ...] = ()
    failures: tuple[tuple[int, tuple[str, ...]], ...] = ()
    hook_delays: tuple[tuple[int, float], ...] = ()
    events: tuple[tuple[str, float], ...] = ()
    suspend_at: float | None = None
    suspend_for: float = 100.0
    cancel_at: float | None = None
    evict_at: tuple[float, ...] = ()
    retry_after: float = 0.0
    crash_after: int | None = None
    crash_kind: str | None = None


def _node(key: str) -> int:
    match = _NODE.match(key)
    assert match is not None, key
    return int(match.group(1))


class _ProcessDiedError(Exception):
    """An append by an engine process that has crashed already: it never reaches the log."""


_WRITES = frozenset(
    ("append", "enqueue", "ack", "nack", "extend", "write_stream", "close_stream", "purge")
)


async def _holding_time(call: Coroutine[Any, Any, Any]) -> Any:
    """Await a world's write while the virtual clock counts it as work in progress.

    A file world syncs in a thread of its own, which the clock cannot see: without this it
    would jump to the next timer while a write is on its way to the disk, and the order of
    the log would depend on the disk. The clock waits for jobs on the loop's default
    executor, so one waits there until the write is done.
    """
    done = threading.Event()
    holder = asyncio.get_running_loop().run_in_executor(None, done.wait)
    try:
        return await call
    finally:
        done.set()
        await holder


class _CrashingWorld:
    """The world as one engine process sees it: dies after ``crash_after`` appends.

    Once dead, no call reaches the world and no answer reaches the process: every coroutine
    method of the world (append, reads, lease, ack, nack, extend, enqueue, waits) fails at
    once, before the call or, for one in flight, after it; only the append at the crash point
    hangs (it committed, and the process died before it heard). With ``hold``,
    writes hold the virtual clock until they are done (see :func:`_holding_time`).
    """

    def __init__(
        self,
        world: World,
        crash_after: int | None,
        crashed: asyncio.Event,
        crash_kind: str | None = None,
        *,
        hold: bool = False,
    ) -> None:
        self._world = world
        self._hold = hold
        self._crash_after = crash_after
        self._crash_kind = crash_kind
        self._crashed = crashed
        self.appends = 0
        self.counted = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._world, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        crashed = self._crashed
        hold = self._hold and name in _WRITES

        async def call(*args: Any, **kwargs: Any) -> Any:
            if crashed.is_set():
                raise _ProcessDiedError(f"the engine process is dead: {name} never reaches it")
            if hold:
                result = await _holding_time(attr(*args, **kwargs))
            else:
                result = await attr(*args, **kwargs)
            if crashed.is_set():
                raise _ProcessDiedError(f"the engine process is dead: {name}'s answer is lost")
            return result

        return call

    async def append(self, run_id: str, events: Any, **options: Any) -> Any:
        if self._crashed.is_set():
            raise _ProcessDiedError("the engine process is dead: nothing more reaches the log")
        if self._hold:
            result = await _holding_time(self._world.append(run_id, events, **options))
        else:
            result = await self._world.append(run_id, events, **options)
        if self._crashed.is_set():
            raise _ProcessDiedError("the engine process is dead: its answer never arrives")
        self.appends += 1
        kind = self._crash_kind
        if kind is None or any(e.type == kind for e in result.events):
            self.counted += 1
        if self.counted == self._crash_after:
            self._crashed.set()
            await _forever()  # died right after the commit
        return result


async def _forever() -> Any:
    await asyncio.Event().wait()


async def _restart(
    dead: Engine, world: World, workflows: list[Registrable], consume_queues: bool
) -> Engine:
    """The world declares the dead engine gone, its tasks are closed, a new engine is up."""
    dead_id = dead.engine_id
    assert dead_id is not None
    await world.deregister_engine(dead_id)
    await _close_dead(dead)
    engine = Engine(world, workflows, consume_queues=consume_queues)
    await engine.__aenter__()
    return engine


async def _close_dead(engine: Engine) -> None:
    """Close a dead engine's tasks: its last calls (the release of its runs) never return,
    so give it a moment of real time, then cancel what hangs. (Virtual time stands still.)"""
    closing = asyncio.ensure_future(engine.aclose())
    done, _ = await asyncio.wait({closing}, timeout=0.2)
    if not done:
        closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)


@dataclass
class EngineRun:
    """What one engine run left behind."""

    log: list[AnyEvent]
    children: dict[str, list[AnyEvent]]
    status: RunStatus
    crashed: bool
    appends: int
    """How many appends the first engine process made (the crash points to choose from; only
    those holding a ``crash_kind`` event if the schedule names one)."""
    notes: list[str] = field(default_factory=list)


class _Outside:
    """The people and systems around the run: hooks, events, suspend/cancel, evictions."""

    def __init__(
        self, schedule: EngineSchedule, world: World, clock: VirtualClock, run_id: str
    ) -> None:
        self.schedule = schedule
        self.world = world
        self.clock = clock
        self.run_id = run_id
        self.engine: Engine | None = None
        self.up = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.start = clock.now()
        self.hook_delays = dict(schedule.hook_delays)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def at(self, when: datetime) -> None:
        delay = (when - self.clock.now()).total_seconds()
        if delay > 0:
            await self.clock.sleep(delay)

    def set_engine(self, engine: Engine | None) -> None:
        """The engine process now up (``None`` between a crash and the restart)."""
        self.engine = engine
        if engine is None:
            self.up.clear()
        else:
            self.up.set()

    async def current(self) -> Engine:
        await self.up.wait()
        assert self.engine is not None
        return self.engine

    async def send(self, event: AnyEvent, *, cancel: bool = False) -> None:
        """A client's request: written to the world, then the engine (if one is up) told.

        Written directly, so a request is never lost with a dying engine process; a
        restarted engine finds it in the log.
        """
        try:
            result = await self.world.append(self.run_id, [event])
        except (RunTerminalError, HookNotFoundError, EntityConflictError):
            return  # the run ended (or the hook went) first, as can happen to any client
        engine = self.engine
        if engine is not None:
            if cancel:
                engine.driver.cancel_jobs(self.run_id)
            engine.driver.deliver(self.run_id, list(result.events))
            engine.driver.wake(self.run_id)

    async def resume_hook(self, event: HookCreated) -> None:
        node = _node(event.token.removeprefix("tok-"))
        delay = self.hook_delays.get(node, 45.0) + node / 1000 + 0.0002
        await self.at(event.created_at + timedelta(seconds=delay))
        payload = _serde.encode(f"payload-{event.token}")
        corr = event.correlation_id
        await self.send(HookReceived(run_id=self.run_id, correlation_id=corr, payload=payload))

    async def raise_event(self, name: str, when: datetime) -> None:
        await self.at(when)
        payload = _serde.encode(f"{name}@{when:%H:%M:%S}")
        await self.send(EventRaised(run_id=self.run_id, name=name, payload=payload))

    async def control(self, what: str, when: datetime) -> None:
        await self.at(when)
        if what == "cancel":
            reason = "cancelled by the schedule"
            await self.send(RunCancelled(run_id=self.run_id, reason=reason), cancel=True)
        elif what == "suspend":
            await self.send(RunSuspended(run_id=self.run_id))
        elif what == "resume":
            await self.send(RunResumed(run_id=self.run_id))
        elif self.engine is not None:
            self.engine.evict()

    async def watch(self) -> None:
        """Answer every hook of the run, and every event wait nobody else answers."""
        seen = 0
        while True:
            page = await self.world.list_events(self.run_id, after_seq=seen)
            for event in page.items:
                seen = event.seq
                if isinstance(event, HookCreated) and event.token.startswith("tok-"):
                    self.spawn(self.resume_hook(event))
                elif isinstance(event, WaitCreated) and event.event_name and not event.resume_at:
                    when = event.created_at + timedelta(seconds=600.0003)
                    self.spawn(self.raise_event(event.event_name, when))
            if page.has_more:
                continue
            await self.world.wait_for_run(self.run_id, after_seq=seen)

    def begin(self) -> None:
        s = self.schedule

        def at(seconds: float) -> datetime:
            return self.start + timedelta(seconds=seconds)

        self.spawn(self.watch())
        for i, (name, when) in enumerate(s.events):
            self.spawn(self.raise_event(name, at(when + 0.0004 + i / 100_000)))
        if s.suspend_at is not None:
            self.spawn(self.control("suspend", at(s.suspend_at + 0.00001)))
            self.spawn(self.control("resume", at(s.suspend_at + s.suspend_for + 0.00005)))
        if s.cancel_at is not None:
            self.spawn(self.control("cancel", at(s.cancel_at + 0.00003)))
        for i, when in enumerate(s.evict_at):
            self.spawn(self.control("evict", at(when + 0.00007 + i / 100_000)))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _behaviour(schedule: EngineSchedule, outside: _Outside) -> Any:
    durations = dict(schedule.durations)
    plans = dict(schedule.failures)
    failed: dict[str, int] = {}

    async def behave(name: str, key: str, arg: int) -> None:
        meta = get_step_metadata()
        engine = await outside.current()
        created = (await engine.world.get_step(meta.run_id, meta.step_id)).created_at
        node = _node(key)
        took = durations.get(node, 1.0) + node / 1000 + 0.0001
        await outside.at(created + timedelta(seconds=took))
        plan = plans.get(node, ())
        done = failed.get(meta.step_id, 0)
        if done < len(plan):
            if plan[done] == "fatal":
                raise FatalError(f"{key} fails as planned")
            failed[meta.step_id] = done + 1
            message = f"{key} attempt {done + 1} fails as planned"
            if plan[done] == "error":
                raise RuntimeError(message)
            raise RetryableError(message, retry_after=schedule.retry_after)

    return behave


async def run_on_engine(
    program: Program,
    schedule: EngineSchedule,
    *,
    seed: int = 0,
    limit: float = 10.0,
    durable: bool = False,
    consume_queues: bool = False,
) -> EngineRun:
    """Run ``program`` on a real engine under ``schedule``; crash and recover if it says so.

    ``limit`` bounds the example in real seconds: a hung engine fails it with
    ``TimeoutError`` in seconds instead of hanging the suite.
    """
    if not durable:
        return await _run_on_engine(
            program, schedule, MemoryWorld(clock=VirtualClock()), seed, limit, consume_queues
        )
    with tempfile.TemporaryDirectory(prefix="worldflow-engine-props-") as scratch:
        world = FileWorld(scratch, fsync=True, clock=VirtualClock(idle_delay=0.002))
        await world.open()
        return await _run_on_engine(program, schedule, world, seed, 3 * limit, consume_queues)


async def _run_on_engine(
    program: Program,
    schedule: EngineSchedule,
    world: MemoryWorld,
    seed: int,
    limit: float,
    consume_queues: bool,
) -> EngineRun:
    clock = world.clock
    assert isinstance(clock, VirtualClock)
    main = definition(program)
    workflows: list[Registrable] = [main, child]
    run_id = "wrun_engine_props"
    durable = isinstance(world, FileWorld)
    crashed = asyncio.Event()
    process = _CrashingWorld(
        world, schedule.crash_after, crashed, schedule.crash_kind, hold=durable
    )
    seen_world = cast(World, process)
    # The outside and the engine after the crash: the same world, its writes holding time.
    shared = cast(World, _CrashingWorld(world, None, asyncio.Event(), hold=durable))
    outside = _Outside(schedule, shared, clock, run_id)
    set_step_behaviour(_behaviour(schedule, outside))
    notes: list[str] = []
    try:
        async with asyncio.timeout(limit):  # real seconds: a hung engine fails the example
            engine = Engine(seen_world, workflows, consume_queues=consume_queues)
            await engine.__aenter__()
            outside.set_engine(engine)
            try:
                crash = asyncio.ensure_future(crashed.wait())
                starting = asyncio.ensure_future(engine.start(main.name, seed, run_id=run_id))
                await asyncio.wait((starting, crash), return_when=asyncio.FIRST_COMPLETED)
                outside.begin()  # the run exists: a crash comes after its first append
                ended = asyncio.ensure_future(_terminal(shared, run_id))
                await asyncio.wait((ended, crash), return_when=asyncio.FIRST_COMPLETED)
                if crash.done() and not ended.done():
                    notes.append(f"crashed at {clock.now():%H:%M:%S.%f}")
                    outside.set_engine(None)
                    starting.cancel()
                    # The world declares the dead engine gone, as it does once its ttl
                    # lapses without a heartbeat (engines on a virtual clock never expire,
                    # and a lapse would only move the recovery later): its runs are orphans
                    # for the next engine to claim. Nothing of the dead engine does this.
                    # The restart holds the virtual clock (a file world's reads and syncs
                    # run in threads the clock cannot see): the new engine is up at the
                    # instant of the crash, as on the memory world.
                    engine = await _holding_time(
                        _restart(engine, shared, workflows, consume_queues)
                    )
                    outside.set_engine(engine)
                    # A client's request written after the new engine read the log, but
                    # before it was up to be told, is in the log: read it (a real engine
                    # is woken by the world; this harness tells its engine directly).
                    outside.spawn(engine.driver.drive(run_id, fetch=True))
                crash.cancel()
                await ended
            finally:
                await outside.close()
                if crashed.is_set() and engine.world is seen_world:
                    # died on the run's last append: nothing to recover, and its calls fail
                    await _holding_time(_close_dead(engine))
                else:
                    await engine.aclose()
    finally:
        set_step_behaviour(None)
    log = await fetch_history(world, run_id)
    children: dict[str, list[AnyEvent]] = {}
    for run in (await world.list_runs(limit=1000)).items:
        if run.run_id != run_id:
            children[run.run_id] = await fetch_history(world, run.run_id)
    status = (await world.get_run(run_id)).status
    await world.aclose()
    return EngineRun(log, children, status, crashed.is_set(), process.counted, notes)


async def _terminal(world: World, run_id: str) -> None:
    seen = 0
    while True:
        run = await world.get_run(run_id)
        if run.status.is_terminal:
            return
        seen = await world.wait_for_run(run_id, after_seq=max(seen, run.last_seq))
