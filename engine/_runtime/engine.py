"""``Engine``: a :class:`~worldflow.Client` plus the worker that runs its workflows.

::

    async with Engine(world=await open_world("memory://"), workflows=[checkout]) as engine:
        run = await engine.start(checkout, "o-1", run_id="o-1")
        await engine.resume_hook("approve:o-1", {"ok": True})
        print(await run.result(timeout=60))

On enter the engine registers on the world (a fresh engine id, kept alive by heartbeats),
publishes its workflows' catalog entries (on a full disk it starts anyway, logs why, and
publishes them once there is room), and claims the orphaned runs of its workflows
(runs nobody owns, or whose owner stopped heartbeating): it drives each from its log, which
re-arms timers and runs again the steps that were in flight. While it runs it keeps
sweeping for orphans, so the runs of an engine that died are finished by the others.

It drives the runs it owns in this process directly (no queue round trip for work it
creates itself). Every append it makes for a run carries its fence (engine id and the run's
epoch), so once another engine has taken a run over, this one can no longer decide anything
for it. It also consumes the world's ``runs`` queue, on which clients and other engines hand
it work for its workflows. On a clean exit it releases its runs and says so on the ``runs``
queue (one message per run, addressed to itself), so the other engines claim them at once
rather than at their next sweep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Self

from worldflow import api
from worldflow._registry import (
    BUILTIN_PREFIX,
    Registrable,
    RegistrableStep,
    Registry,
    StepDefinition,
    WorkflowDefinition,
)
from worldflow._replay.instance import Progress
from worldflow._runtime.arguments import actor_argument
from worldflow._runtime.catalog import publish_catalog, workflow_info
from worldflow._runtime.children import start_child_services
from worldflow._runtime.client import Client, IdTaken
from worldflow._runtime.driver import RUN_QUEUE, STEP_QUEUE, Driver
from worldflow._runtime.handoff import hand_over
from worldflow._runtime.ownership import RunOwner
from worldflow._runtime.schedules import Schedules, declared, scheduler_definition
from worldflow._runtime.telemetry import Telemetry
from worldflow.errors import (
    ConfigurationError,
    EngineNotRunningError,
    EntityConflictError,
    LeaseLostError,
    OwnershipLostError,
    RunOwnedElsewhereError,
    SeqConflictError,
)
from worldflow.worlds import (
    ErrorInfo,
    EventResult,
    Fence,
    HookReceived,
    RunCreated,
    RunFailed,
    RunStarted,
    RunStatus,
    WorkflowRun,
    World,
)
from worldflow.worlds._clock import Clock, SystemClock

__all__ = ["Engine"]

log = logging.getLogger("worldflow.engine")

_ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.STALLED)
_UNSERVED_NAMED = 20  # runs named one by one in the warning about unknown workflows
_RECOVERY_CONCURRENCY = 32
_CLAIM_BATCH = 100
_NO_EXPIRY = 100 * 365 * 86400.0  # seconds: "until it deregisters" (see `ttl`)
_STOP_ROUNDS = 3
_STOP_WAIT = 5.0  # seconds per round for tasks to finish after being cancelled


def _warn_unserved(runs: list[tuple[str, str]]) -> None:
    """Say which unfinished runs have a workflow that no live engine has (renamed, removed,
    or its engines are all down): nothing drives them."""
    for run_id, name in runs[:_UNSERVED_NAMED]:
        log.warning(
            "run %s is of workflow %r, which no engine on this world has (renamed or "
            "removed? its engines all down?): nothing drives it",
            run_id,
            name,
        )
    if len(runs) > _UNSERVED_NAMED:
        names = sorted({name for _, name in runs})
        log.warning(
            "%d more unfinished runs of workflows no engine has: %s",
            len(runs) - _UNSERVED_NAMED,
            ", ".join(repr(n) for n in names),
        )


class Engine(Client):
    """Runs workflows on a world: a :class:`Client` that also owns worker tasks.

    Args:
        world: The world to use; ``None`` opens the default one (``open_world()``:
            ``WORLDFLOW_WORLD`` or ``file://./.worldflow``) and closes it on exit.
        workflows: The workflows this engine serves (``@workflow`` functions).
        steps: Steps to register explicitly (every ``@step`` is found by name anyway).
        clock: Time for timers, backoff, heartbeats and ``Run.result(timeout=)``; defaults
            to the world's clock if it has one, else the system clock.
        max_concurrent_steps: Step attempts running at once in this engine.
        max_cached_runs: Live workflow instances kept in memory; a run evicted from the cache
            is rebuilt from its log when it next has work. Runs with a timer due within
            30 s or a step running here are kept past it (up to 10x), since they will have
            work in a moment.
        recover: Claim and drive the orphaned runs of these workflows on enter, and keep
            sweeping for orphans (runs of engines that died) while running.
        consume_queues: Take work for these workflows from the world's ``runs`` queue.
        lease_for: How long a queue lease lasts before another consumer may take it over.
        ttl: Seconds without a heartbeat after which the world declares this engine dead
            and other engines take its runs over; it heartbeats every ``ttl / 3`` and sweeps
            for orphans as often. ``None`` never expires (no heartbeats): the default on a
            clock other than the system clock, where heartbeats would make a virtual clock
            crawl through long sleeps; pass a number to test failover on one.
        permit_poll: Seconds between asks of a refused flow-control permit (a run or step
            over its ``concurrency=`` / ``rate_limit=``). A permit freed in this engine
            wakes its waiters here at once; this bounds how late a permit freed by another
            engine is noticed.
    """

    def __init__(
        self,
        world: World | None = None,
        workflows: Iterable[Registrable] = (),
        *,
        steps: Iterable[RegistrableStep] = (),
        clock: Clock | None = None,
        telemetry: Telemetry | bool | None = None,
        max_concurrent_steps: int = 1000,
        max_cached_runs: int = 1000,
        recover: bool = True,
        consume_queues: bool = True,
        lease_for: float = 60.0,
        ttl: float | object | None = ...,
        permit_poll: float = 1.0,
    ) -> None:
        if max_concurrent_steps < 1 or max_cached_runs < 1:
            raise ValueError("max_concurrent_steps and max_cached_runs must be at least 1")
        if isinstance(permit_poll, bool) or not (
            isinstance(permit_poll, int | float) and permit_poll > 0
        ):
            raise ValueError(f"permit_poll must be seconds > 0, got {permit_poll!r}")
        self._permit_poll = float(permit_poll)
        super().__init__(world, clock=clock, telemetry=telemetry)
        self.registry = Registry(workflows, steps)
        self.registry.add_workflow(scheduler_definition())  # every engine can run schedules
        self._schedules = Schedules(self)
        self._max_concurrent_steps = max_concurrent_steps
        self._max_cached_runs = max_cached_runs
        self._recover = recover
        self._consume = consume_queues
        self._lease_for = lease_for
        self._ttl_option = ttl
        self._ttl: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._driver: Driver | None = None
        self._closing = False
        self._previous_default: Engine | None = None
        self.owner = RunOwner()
        """This engine's id on the world and the fences of its runs."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._driver is not None or self._closing:
            raise EngineNotRunningError(
                "this Engine was entered already; an Engine runs once: make a new one"
            )
        world = await self._open()
        if getattr(world, "read_only", False) is True:
            raise ConfigurationError(
                f"the world at {getattr(world, 'path', world)} was opened read-only, and an "
                "Engine writes to its world: open it without read_only (file://...?read_only=1 "
                "is for reading beside a running engine, e.g. the CLI or the inspector)"
            )
        self._ttl = self._pick_ttl()
        self._driver = Driver(
            world=self._writes,
            registry=self.registry,
            clock=self.clock,
            spawn=self._spawn,
            max_cached_runs=self._max_cached_runs,
            max_concurrent_steps=self._max_concurrent_steps,
            step_services=start_child_services(self),
            owner=self.owner,
            permit_poll=self._permit_poll,
        )
        self._previous_default = api.set_default_engine(self)
        try:
            entries = [
                workflow_info(d)
                for d in self.registry.workflows
                if not d.name.startswith(BUILTIN_PREFIX)
            ]
            await publish_catalog(world, entries, self.clock, self._spawn)
            await self._register()
            if self._recover:
                await self.recover()
            for definition, timing in declared(self.registry.workflows):
                await self._schedules.ensure(definition, timing)
            if self._ttl is not None:
                self._spawn(self._keep_alive(self._ttl), "heartbeat")
            if self._consume:
                for queue in (RUN_QUEUE, STEP_QUEUE):
                    self._spawn(self._consume_queue(queue), f"queue {queue}")
        except BaseException:
            await self.aclose()
            raise
        return self

    def _pick_ttl(self) -> float | None:
        option = self._ttl_option
        if option is ...:
            return 30.0 if isinstance(self.clock, SystemClock) else None
        if option is not None and not (isinstance(option, int | float) and option > 0):
            raise ValueError(f"ttl must be a number of seconds > 0 or None, got {option!r}")
        return None if option is None else float(option)

    async def _register(self) -> None:
        info = await self.world.register_engine(
            workflows=self.registry.workflow_names(),
            ttl=_NO_EXPIRY if self._ttl is None else self._ttl,
        )
        self.owner.reset(info.engine_id)

    async def aclose(self) -> None:
        """Stop: cancel in-flight steps and timers, release this engine's runs (another
        engine, or the next start, resumes them), close an owned world. Idempotent."""
        if self._closing:
            return
        self._closing = True
        for _ in range(_STOP_ROUNDS):
            tasks = [t for t in self._tasks if not t.done()]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            # Bounded: a step that swallows every CancelledError must not hang shutdown.
            await asyncio.wait(tasks, timeout=_STOP_WAIT)
        stuck = [t.get_name() for t in self._tasks if not t.done()]
        if stuck:
            log.warning("engine stopped with tasks that ignore cancellation: %s", stuck)
        driven = self.owner.runs()
        if self._driver is not None:
            self._driver.close()
        engine_id = self.owner.engine_id
        if engine_id is not None and self._world is not None:
            self.owner.reset(None)
            try:
                released = await self._world.deregister_engine(engine_id)
                if released:
                    await hand_over(self._world, engine_id, driven)
            except Exception:  # a closed or unreachable world: the TTL frees the runs
                log.warning("engine %s could not release its runs", engine_id, exc_info=True)
        if api._default is self:
            api.set_default_engine(self._previous_default)
        await super().aclose()

    @property
    def schedules(self) -> Schedules:
        """The world's cron schedules: add, pause, resume, trigger, update, delete, list."""
        return self._schedules

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        if self._closing:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=f"worldflow {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def driver(self) -> Driver:
        """The run driver (cache, timers, steps); for tests, benchmarks and the inspector."""
        if self._driver is None or self._closing:
            when = "has stopped" if self._closing else "was not started"
            raise EngineNotRunningError(
                f"this Engine {when}: use it inside `async with Engine(...) as engine` (an "
                "Engine runs once; make a new one to run again)"
            )
        return self._driver

    @property
    def engine_id(self) -> str | None:
        """This engine's id on the world (fresh at every registration); ``None`` outside
        ``async with``."""
        return self.owner.engine_id

    # -- ownership ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """Claim every orphaned run of the served workflows and drive each from its log.

        An orphan is a pending or running run that nobody owns, or whose owner stopped
        heartbeating. Called on enter; returns once each claimed run is rebuilt (its timers
        re-armed, its unfinished steps running again). Suspended runs wait for ``resume``.
        Stalled runs are replayed against this engine's code: those it replays go on.
        Unfinished runs of workflows no live engine has are logged (WARNING) by run and
        workflow name. Returns how many runs it claimed.
        """
        total = 0
        while True:
            claimed = await self._claim()
            total += claimed
            if claimed < _CLAIM_BATCH:
                break
        await self._report_unserved()
        return total

    async def _report_unserved(self) -> None:
        served = {entry.name for entry in await self.world.list_workflows() if entry.engines} | set(
            self.registry.workflow_names()
        )
        unserved: list[tuple[str, str]] = []
        cursor: str | None = None
        while True:
            page = await self.world.list_runs(status=_ACTIVE, order="asc", cursor=cursor)
            unserved.extend(
                (r.run_id, r.workflow_name)
                for r in page.items
                if r.workflow_name not in served and not self.registry.has_workflow(r.workflow_name)
            )
            if not page.has_more:
                break
            cursor = page.cursor
        _warn_unserved(unserved)

    async def _claim(self, limit: int = _CLAIM_BATCH) -> int:
        engine_id = self.owner.engine_id
        if engine_id is None:
            return 0
        runs = await self.world.claim_orphans(
            engine_id, workflows=self.registry.workflow_names(), limit=limit
        )
        driver = self.driver
        gate = asyncio.Semaphore(_RECOVERY_CONCURRENCY)

        async def one(run_id: str) -> None:
            async with gate:
                try:
                    await driver.drive(run_id, unstall=True)
                except Exception:
                    log.exception("recovering run %s", run_id)

        for run in runs:
            self.owner.saw(run)
        await asyncio.gather(*(one(run.run_id) for run in runs))
        return len(runs)

    async def _keep_alive(self, ttl: float) -> None:
        """Heartbeat every ``ttl / 3``; sweep for orphans after each beat."""
        clock = self.clock
        while True:
            await clock.sleep(ttl / 3)
            engine_id = self.owner.engine_id
            if engine_id is None:
                return
            try:
                await self.world.heartbeat(engine_id)
            except OwnershipLostError:
                log.warning(
                    "engine %s was declared dead (no heartbeat within %ss): its runs may "
                    "have other owners; dropping them and registering again",
                    engine_id,
                    ttl,
                )
                self.driver.evict()
                await self._register()
            except Exception:
                log.warning("engine %s: heartbeat failed", engine_id, exc_info=True)
                continue
            if self._recover:
                try:
                    await self._claim()
                except Exception:
                    log.warning("engine %s: sweeping for orphans failed", engine_id, exc_info=True)

    async def _consume_queue(self, queue: str) -> None:
        world = self.world
        driver = self.driver
        names = self.registry.workflow_names()
        while True:
            leases = await world.lease(
                queue,
                lease_for=self._lease_for,
                max_messages=16,
                wait=5.0,
                workflows=names,
                engine_id=self.owner.engine_id,
            )
            for lease in leases:
                addressee = lease.message.engine_id
                try:
                    if self._recover and addressee not in (None, self.owner.engine_id):
                        # The world gives a message addressed to an engine only once that
                        # engine is gone: take one of the orphans over now, not at the sweep.
                        await self._claim(limit=1)
                    await driver.drive(lease.message.run_id, fetch=True)
                except Exception:
                    log.exception("driving run %s from the %s queue", lease.message.run_id, queue)
                    await world.nack(lease, delay=1.0)
                    continue
                try:
                    await world.ack(lease)
                except LeaseLostError:
                    pass  # someone else had it by then; driving twice is harmless

    # -- what the worker changes in the Client's verbs ---------------------------------------

    def _definition(self, workflow: Any) -> WorkflowDefinition | None:
        if isinstance(workflow, str) and self.registry.has_workflow(workflow):
            return self.registry.workflow(workflow)
        return super()._definition(workflow)

    def _step_definition(self, name: str) -> StepDefinition | None:
        return self.registry.step(name) if self.registry.has_step(name) else None

    def _serves(self, workflow_name: str) -> bool:
        # A run this engine starts of a workflow whose code it has is its own to drive, even
        # if the workflow is not in `workflows=` (a child's, a test's); claims and queue
        # leases cover the listed ones, which are what it publishes.
        return self.registry.has_workflow(workflow_name)

    def _start_events(self, created: RunCreated, served: bool) -> tuple[list[Any], Any]:
        if not served or self.owner.engine_id is None or self._gated(created):
            return super()._start_events(created, served)
        # Started and owned at once: this engine drives it right away (saves an append).
        fence = Fence(engine_id=self.owner.engine_id, epoch=0)
        return [created, RunStarted(run_id=created.run_id)], fence

    async def _begin(self, created: RunCreated, served: bool) -> None:
        fence: Fence | None = None
        if served and self.owner.engine_id is not None and not self._gated(created):
            fence = Fence(engine_id=self.owner.engine_id, epoch=0)
        if fence is not None and self._driver is not None and not self._closing:
            # Started, owned and driven here: the body's first decisions go in the same
            # append (under expected_seq=0: a taken id is a SeqConflictError).
            definition = self.registry.workflow(created.workflow_name)
            try:
                result = await self._driver.fused.start(created, definition, fence)
            except SeqConflictError as exc:
                raise IdTaken from exc
            if result is not None:
                return
        await super()._begin(created, served)

    async def _received(self, event: HookReceived) -> EventResult:
        driver = self._driver
        if driver is not None and not self._closing:
            result = await driver.fused.deliver(event)
            if result is not None:
                return result
        return await super()._received(event)

    def _gated(self, created: RunCreated) -> bool:
        """Whether a new run may not start at once: delayed, or its workflow has
        flow-control limits (the driver starts it when it is due and admitted)."""
        if created.start_at is not None:
            return True
        return self.registry.workflow(created.workflow_name).limits is not None

    async def _created(self, result: EventResult) -> None:
        run = result.run
        mine = run.owner_id == self.owner.engine_id or (
            run.owner_id is None and self._driver is not None and not self._closing
        )  # a delayed or limited run nobody owns yet: this engine's driver starts it
        if not self._serves(run.workflow_name) or not mine:
            await super()._created(result)
            return
        driver = self.driver
        self.owner.saw(run)
        driver.adopt(run, result.events)
        driver.wake(run.run_id)

    async def _woken(self, result: EventResult) -> None:
        driver = self.driver
        driver.deliver(result.run.run_id, result.events)
        driver.endings.wake_or_enqueue(result.run)

    async def _cancelled(self, result: EventResult) -> None:
        run = result.run
        if self.owner.drives(run):
            self.driver.cancel_jobs(run.run_id)
        await self._woken(result)

    def _purged(self, run_id: str) -> None:
        self.driver.forget(run_id)

    # -- stalled runs (they need this engine's code) -----------------------------------------

    async def unstall(self, run_id: str) -> RunStatus:
        """Replay a stalled run against this engine's code; if it replays, the run goes on.

        Engines do this for every stalled run they claim when they start, so after a deploy
        (or a rollback) that fixes the code nothing needs calling; this is for an engine
        that is already running. Returns the run's status afterwards (still ``stalled`` if
        the code does not replay it); a run that is not stalled is left as it is. A
        workflow this engine does not have → ``WorkflowNotRegisteredError``; a run another
        live engine owns → ``RunOwnedElsewhereError``.
        """
        run = await self.world.get_run(run_id)
        if run.status is not RunStatus.STALLED:
            return run.status
        self.registry.workflow(run.workflow_name)
        self._check_owner(run)
        await self.driver.drive(run_id, unstall=True)
        return (await self.world.get_run(run_id)).status

    async def fail(
        self, run_id: str, reason: str | None = None, *, actor: str | None = None
    ) -> None:
        """Fail a stalled run for good (its divergence becomes its error); ``actor`` (who
        asked) is recorded in ``run_failed``.

        For a run whose code will not be fixed: ``Run.result()`` then raises
        ``WorkflowFailedError`` with ``error_name="NondeterminismError"`` and a parent
        workflow sees its child fail. A run that is not stalled →
        :class:`~worldflow.EntityConflictError` (``cancel()`` stops a run that is going);
        a run another live engine owns → ``RunOwnedElsewhereError`` (fail it there).
        """
        run = await self.world.get_run(run_id)
        if run.status is not RunStatus.STALLED:
            raise EntityConflictError(
                f"run {run_id} is {run.status}, not stalled: fail() ends a run whose log the "
                "code no longer replays; to stop a run that is going, cancel() it"
            )
        self._check_owner(run)
        stalled = run.error
        message = stalled.message if stalled is not None else "its log did not replay"
        if reason:
            message = f"{message}\nFailed for good: {reason}"
        error = ErrorInfo(name="NondeterminismError", message=message, code="nondeterminism")
        event = RunFailed(run_id=run_id, error=error, actor=actor_argument(actor))
        result = await self._writes.append(run_id, [event], fence=self.owner.fence(run_id))
        await self._woken(result)

    def _check_owner(self, run: WorkflowRun) -> None:
        """Take note of the run's owner: this engine acts on a run it owns or nobody does."""
        if not self.owner.saw(run):
            raise RunOwnedElsewhereError(
                f"run {run.run_id} is owned by engine {run.owner_id}: act on it there",
                owner_id=run.owner_id,
                owner_epoch=run.owner_epoch,
            )

    # -- for tests, benchmarks and the inspector ---------------------------------------------

    def evict(self, run_id: str | None = None) -> int:
        """Drop cached workflow instances (one run's, or all) so the next event replays the
        log. Returns how many were dropped."""
        return self.driver.evict(run_id)

    def progress(self, run_id: str) -> Progress | None:
        """The cached instance's progress (``blocked_on``, pending steps, waits), or ``None``
        when the run is not cached."""
        return self.driver.progress(run_id)

    def blocked_on(self, run_id: str) -> list[str] | None:
        """What the run's body waits for (``["step charge", "hook approve:o-1"]``), or
        ``None`` when the run is not cached here."""
        progress = self.driver.progress(run_id)
        return None if progress is None else progress.blocked_on
