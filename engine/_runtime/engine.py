"""``Engine``: owns the worker tasks, recovers runs, and serves the runtime API.

::

    async with Engine(world=await open_world("memory://"), workflows=[checkout]) as engine:
        run = await engine.start(checkout, "o-1", run_id="o-1")
        await engine.resume_hook("approve:o-1", {"ok": True})
        print(await run.result(timeout=60))

The engine drives runs in this process directly (no queue round trip for work it creates
itself) and stays correct under a crash because everything it does is in the world's log: on
enter it drives every non-terminal run of its workflows again (recovery), which re-arms timers
and re-runs steps that were in flight. It also consumes the world's ``runs`` and ``steps``
queues, so another process (or a client without an engine) can hand it work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from worldflow import _serde, api
from worldflow._registry import (
    BUILTIN_PREFIX,
    Registrable,
    RegistrableStep,
    Registry,
    WorkflowDefinition,
    WorkflowFunction,
)
from worldflow._replay.instance import Progress
from worldflow._runtime.arguments import (
    event_name_argument,
    id_argument,
    metadata_argument,
    optional_id_argument,
    reason_argument,
)
from worldflow._runtime.catalog import WorkflowInfo, workflow_info
from worldflow._runtime.children import start_child_services
from worldflow._runtime.driver import RUN_QUEUE, STEP_QUEUE, Driver
from worldflow._runtime.run import Run, RunInfo, run_info
from worldflow._runtime.schedules import Schedules, declared, scheduler_definition
from worldflow._webhooks import WebhookRequest, WebhookResponse, response_for
from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    LeaseLostError,
    StepNotFoundError,
    WorkflowNotRegisteredError,
)
from worldflow.worlds._clock import Clock, SystemClock
from worldflow.worlds._events import (
    EventRaised,
    HookReceived,
    RunCancelled,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStarted,
    RunSuspended,
    StepResumed,
)
from worldflow.worlds._ids import new_id, random_bytes
from worldflow.worlds._open import open_world
from worldflow.worlds._protocol import EventResult, World
from worldflow.worlds._records import ErrorInfo, Hook, Page, RunStatus, Step, StepStatus

__all__ = ["Engine"]

log = logging.getLogger("worldflow.engine")

_ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.STALLED)
_UNSERVED_NAMED = 20  # runs named one by one in the warning about unknown workflows
_RECOVERY_CONCURRENCY = 32
_STOP_ROUNDS = 3
_STOP_WAIT = 5.0  # seconds per round for tasks to finish after being cancelled


def _warn_unserved(runs: list[tuple[str, str]]) -> None:
    """Say which unfinished runs have a workflow this engine does not have (renamed,
    removed, or served by another engine): they are not driven here."""
    for run_id, name in runs[:_UNSERVED_NAMED]:
        log.warning(
            "run %s is of workflow %r, which this engine does not have (renamed or removed? "
            "served by another engine?): it is not driven here",
            run_id,
            name,
        )
    if len(runs) > _UNSERVED_NAMED:
        names = sorted({name for _, name in runs})
        log.warning(
            "%d more unfinished runs of workflows this engine does not have: %s",
            len(runs) - _UNSERVED_NAMED,
            ", ".join(repr(n) for n in names),
        )


class Engine:
    """Runs workflows on a world: an async context manager owning its worker tasks.

    Args:
        world: The world to use; ``None`` opens the default one (``open_world()``:
            ``WORLDFLOW_WORLD`` or ``file://./.worldflow``) and closes it on exit.
        workflows: The workflows this engine serves (``@workflow`` functions).
        steps: Steps to register explicitly (every ``@step`` is found by name anyway).
        clock: Time for timers, backoff and ``Run.result(timeout=)``; defaults to the
            world's clock if it has one, else the system clock.
        max_concurrent_steps: Step attempts running at once in this engine.
        max_cached_runs: Live workflow instances kept in memory; a run evicted from the cache
            is rebuilt from its log when it next has work. Runs with a timer due within
            30 s or a step running here are kept past it (up to 10x), since they will have
            work in a moment.
        recover: Drive every non-terminal run of these workflows on enter.
        consume_queues: Take work for these runs from the world's ``runs`` / ``steps`` queues.
        lease_for: How long a queue lease lasts before another consumer may take it over.
    """

    def __init__(
        self,
        world: World | None = None,
        workflows: Iterable[Registrable] = (),
        *,
        steps: Iterable[RegistrableStep] = (),
        clock: Clock | None = None,
        max_concurrent_steps: int = 1000,
        max_cached_runs: int = 1000,
        recover: bool = True,
        consume_queues: bool = True,
        lease_for: float = 60.0,
    ) -> None:
        if max_concurrent_steps < 1 or max_cached_runs < 1:
            raise ValueError("max_concurrent_steps and max_cached_runs must be at least 1")
        self.registry = Registry(workflows, steps)
        self.registry.add_workflow(scheduler_definition())  # every engine can run schedules
        self._schedules = Schedules(self)
        self._world = world
        self._owns_world = world is None
        self._clock = clock
        self._max_concurrent_steps = max_concurrent_steps
        self._max_cached_runs = max_cached_runs
        self._recover = recover
        self._consume = consume_queues
        self._lease_for = lease_for
        self._tasks: set[asyncio.Task[Any]] = set()
        self._driver: Driver | None = None
        self._closing = False
        self._previous_default: Engine | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._driver is not None:
            raise RuntimeError("this Engine is already running; an Engine is entered once")
        if self._world is None:
            self._world = await open_world()
        world = self._world
        if self._clock is None:
            world_clock = getattr(world, "clock", None)
            self._clock = world_clock if isinstance(world_clock, Clock) else SystemClock()
        self._driver = Driver(
            world=world,
            registry=self.registry,
            clock=self._clock,
            spawn=self._spawn,
            max_cached_runs=self._max_cached_runs,
            max_concurrent_steps=self._max_concurrent_steps,
            step_services=start_child_services(self),
        )
        self._previous_default = api.set_default_engine(self)
        try:
            if self._recover:
                await self.recover()
            for definition, timing in declared(self.registry.workflows):
                await self._schedules.ensure(definition, timing)
            if self._consume:
                for queue in (RUN_QUEUE, STEP_QUEUE):
                    self._spawn(self._consume_queue(queue), f"queue {queue}")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel in-flight steps and timers (recovery resumes them), close an owned
        world. Idempotent."""
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
        if self._driver is not None:
            self._driver.close()
        if api._default is self:
            api.set_default_engine(self._previous_default)
        if self._owns_world and self._world is not None:
            await self._world.aclose()

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
    def world(self) -> World:
        """The world this engine runs on."""
        if self._world is None:
            raise RuntimeError("the Engine opens its default world on enter: use `async with`")
        return self._world

    @property
    def clock(self) -> Clock:
        """The clock this engine reads (the world's, unless one was given)."""
        if self._clock is None:
            raise RuntimeError("the Engine picks its clock on enter: use `async with`")
        return self._clock

    @property
    def driver(self) -> Driver:
        """The run driver (cache, timers, steps); for tests, benchmarks and the inspector."""
        if self._driver is None or self._closing:
            raise RuntimeError(
                "this Engine is not running: use it inside `async with Engine(...) as engine`"
            )
        return self._driver

    async def recover(self) -> int:
        """Drive every non-terminal, unsuspended run of the served workflows from its log.

        Called on enter, and returns once each of those runs is rebuilt: its timers re-armed
        and its unfinished steps running again. Suspended runs wait for ``resume``. Stalled
        runs are replayed against this engine's code: those it replays go on. Runs of
        workflows this engine does not have are logged (WARNING) by run and workflow name.
        Returns how many runs it picked up.
        """
        driver = self.driver
        gate = asyncio.Semaphore(_RECOVERY_CONCURRENCY)

        async def one(run_id: str) -> None:
            async with gate:
                try:
                    await driver.drive(run_id, unstall=True)
                except Exception:
                    log.exception("recovering run %s", run_id)

        run_ids: list[str] = []
        unserved: list[tuple[str, str]] = []
        cursor: str | None = None
        while True:
            page = await self.world.list_runs(status=_ACTIVE, order="asc", cursor=cursor)
            for r in page.items:
                if self.registry.has_workflow(r.workflow_name):
                    run_ids.append(r.run_id)
                else:
                    unserved.append((r.run_id, r.workflow_name))
            if not page.has_more:
                break
            cursor = page.cursor
        _warn_unserved(unserved)
        await asyncio.gather(*(one(run_id) for run_id in run_ids))
        return len(run_ids)

    async def _consume_queue(self, queue: str) -> None:
        world = self.world
        driver = self.driver
        while True:
            leases = await world.lease(queue, lease_for=self._lease_for, max_messages=16, wait=5.0)
            for lease in leases:
                try:
                    await driver.drive(lease.message.run_id, fetch=True)
                except Exception:
                    log.exception("driving run %s from the %s queue", lease.message.run_id, queue)
                    await world.nack(lease, delay=1.0)
                    continue
                try:
                    await world.ack(lease)
                except LeaseLostError:
                    pass  # someone else had it by then; driving twice is harmless

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

    # -- starting runs -----------------------------------------------------------------------

    def _definition(self, workflow: Callable[..., Any] | str | WorkflowDefinition) -> Any:
        if isinstance(workflow, WorkflowFunction):
            return workflow.definition
        if isinstance(workflow, WorkflowDefinition):
            return workflow
        if isinstance(workflow, str):
            return self.registry.workflow(workflow)
        raise WorkflowNotRegisteredError(
            f"{workflow!r} is not a workflow: decorate it with @workflow and pass it in "
            "Engine(workflows=[...])"
        )

    async def start(
        self,
        workflow: Callable[..., Any] | str,
        *args: Any,
        run_id: str | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        initial_state: Any = None,
        **kwargs: Any,
    ) -> Run:
        """Start a run of ``workflow(*args, **kwargs)`` and return its handle at once.

        Args:
            workflow: The ``@workflow`` function, or its registered name.
            run_id: The run's id; a run with this id already existing is an
                :class:`~worldflow.EntityConflictError` (HTTP 409). Default: a fresh
                ``wrun_`` id.
            resource_id: The resource (user, tenant) the run is for; runs can be listed by it.
            metadata: Searchable string metadata.
            initial_state: The workflow state's starting value (``get_state()``).

        Raises:
            WorkflowNotRegisteredError: no such workflow.
            TypeError: the arguments do not fit the workflow's signature.
            SerializationError: an argument cannot be recorded.
        """
        definition: WorkflowDefinition = self._definition(workflow)
        driver = self.driver
        rid = new_id("wrun") if run_id is None else id_argument(run_id, "run_id")
        resource_id = optional_id_argument(resource_id, "resource_id")
        meta = metadata_argument(metadata)
        payload = definition.encode_input(*args, **kwargs)
        state = _serde.encode(initial_state)
        created = RunCreated(
            seed=random_bytes(16).hex(),  # os.urandom, read ahead in blocks
            run_id=rid,
            workflow_name=definition.name,
            input=payload,
            resource_id=resource_id,
            metadata=meta,
            initial_state=state,
        )
        # Started at once: this engine drives it right away (saves an append).
        try:
            result = await self.world.append(rid, [created, RunStarted(run_id=rid)])
        except EntityConflictError:
            raise EntityConflictError(
                f"a run with id {rid!r} already exists; run ids are unique (start it under "
                "another id, or get_run() the existing one)"
            ) from None
        driver.adopt(result.run, result.events)
        driver.wake(rid)
        return Run(self, rid)

    async def get_run(self, run_id: str) -> Run:
        """A handle on an existing run. Unknown run → :class:`~worldflow.RunNotFoundError`."""
        await self.world.get_run(id_argument(run_id, "run_id"))
        return Run(self, run_id)

    async def list_runs(
        self,
        *,
        workflow: Callable[..., Any] | str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[RunInfo]:
        """Runs matching every given filter, newest first; pass ``cursor`` for the next page."""
        name: str | None = None
        if isinstance(workflow, str):
            name = workflow
        elif workflow is not None:
            name = self._definition(workflow).name
        page = await self.world.list_runs(
            workflow_name=name,
            status=status,
            resource_id=resource_id,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        return Page(
            items=[run_info(r) for r in page.items], cursor=page.cursor, has_more=page.has_more
        )

    def list_workflows(self) -> list[WorkflowInfo]:
        """The workflows this engine serves: name, parameters, step names, docstring."""
        return [
            workflow_info(d)
            for d in self.registry.workflows
            if not d.name.startswith(BUILTIN_PREFIX)
        ]

    def get_workflow(self, name: str) -> WorkflowInfo:
        """One served workflow's details; unknown → ``WorkflowNotRegisteredError``."""
        return workflow_info(self.registry.workflow(name))

    async def rerun(self, run_id: str) -> Run:
        """Start a new run with an old run's input, resource id, metadata and initial state.

        The new run's metadata gets ``rerun_of`` = the old run id.
        """
        old = await self.world.get_run(id_argument(run_id, "run_id"))
        definition = self.registry.workflow(old.workflow_name)
        first = (await self.world.list_events(run_id, limit=1)).items
        initial_state = (
            first[0].initial_state if first and isinstance(first[0], RunCreated) else None
        )
        rid = new_id("wrun")
        created = RunCreated(
            seed=random_bytes(16).hex(),  # os.urandom, read ahead in blocks
            run_id=rid,
            workflow_name=definition.name,
            input=old.input,
            resource_id=old.resource_id,
            metadata={**old.metadata, "rerun_of": old.run_id},
            initial_state=initial_state if initial_state is not None else _serde.encode(None),
        )
        result = await self.world.append(rid, [created, RunStarted(run_id=rid)])
        self.driver.adopt(result.run, result.events)
        self.driver.wake(rid)
        return Run(self, rid)

    # -- sending things to runs --------------------------------------------------------------

    def _woken(self, result: EventResult) -> None:
        driver = self.driver
        driver.deliver(result.run.run_id, result.events)
        driver.wake_or_enqueue(result.run)

    async def get_hook_by_token(self, token: str) -> Hook:
        """The live hook holding ``token``; unknown → :class:`~worldflow.HookNotFoundError`."""
        return await self.world.get_hook_by_token(token)

    async def resume_hook(self, token: str, payload: Any = None) -> Hook:
        """Send ``payload`` to the hook holding ``token``; the waiting workflow continues.

        Returns the hook. Unknown (or disposed) token → ``HookNotFoundError`` (HTTP 404).
        """
        token = id_argument(token, "token")
        encoded = _serde.encode(payload)
        hook = await self.world.get_hook_by_token(token)
        return await self._send_to_hook(hook, encoded)

    async def _send_to_hook(self, hook: Hook, encoded: Any) -> Hook:
        event = HookReceived(run_id=hook.run_id, correlation_id=hook.hook_id, payload=encoded)
        result = await self.world.append(hook.run_id, [event])
        self._woken(result)
        for view in result.hooks:
            if view.hook_id == hook.hook_id:
                return view
        return hook

    async def resume_webhook(self, token: str, request: WebhookRequest) -> WebhookResponse:
        """Deliver an HTTP request to the webhook holding ``token``; return what the caller
        gets back (the webhook's ``respond_with``, default ``202 Accepted``).

        Unknown token, or a token of a plain hook → ``HookNotFoundError`` (HTTP 404).
        """
        if not isinstance(request, WebhookRequest):
            raise TypeError(f"resume_webhook() takes a WebhookRequest, not {request!r}")
        token = id_argument(token, "token")
        hook = await self.world.get_hook_by_token(token)
        if not hook.is_webhook:
            raise HookNotFoundError(
                f"token {token!r} belongs to a hook, not a webhook: send it a payload with "
                "resume_hook()"
            )
        await self._send_to_hook(hook, _serde.encode(request))
        return response_for(hook.metadata)

    async def raise_event(self, run_id: str, name: str, payload: Any = None) -> None:
        """Raise the named event for a run (Dapr ``raiseEvent``); kept until the workflow
        waits for it with ``wait_for_event(name)``."""
        run_id = id_argument(run_id, "run_id")
        name = event_name_argument(name)
        event = EventRaised(run_id=run_id, name=name, payload=_serde.encode(payload))
        self._woken(await self.world.append(run_id, [event]))

    async def _suspended_step(self, run_id: str, step: str) -> Step:
        if step.startswith("step_"):
            try:
                return await self.world.get_step(run_id, step)
            except StepNotFoundError:
                pass
        matches: list[Step] = []
        cursor: str | None = None
        while True:
            page = await self.world.list_steps(run_id, cursor=cursor)
            matches.extend(
                s
                for s in page.items
                if step in (s.step_id, s.step_name, s.step_name.rpartition(":")[2])
            )
            if not page.has_more:
                break
            cursor = page.cursor
        suspended = [s for s in matches if s.status is StepStatus.SUSPENDED]
        if len(suspended) == 1:
            return suspended[0]
        if len(suspended) > 1:
            ids = ", ".join(s.step_id for s in suspended)
            raise EntityConflictError(
                f"several steps named {step!r} of run {run_id} are suspended ({ids}); "
                "resume one by its step id"
            )
        if matches:
            return matches[-1]
        raise StepNotFoundError(f"run {run_id} has no step {step!r} (by id or by name)")

    async def resume_step(self, run_id: str, step: str, data: Any = None) -> None:
        """Resume a step that called ``suspend()``: it runs again and ``get_resume_data()``
        returns ``data``.

        ``step`` is the step's id or name. A step that is not suspended → an
        :class:`~worldflow.EntityConflictError` saying what it is doing.
        """
        run_id = id_argument(run_id, "run_id")
        step = id_argument(step, "step")
        encoded = _serde.encode(data)
        found = await self._suspended_step(run_id, step)
        if found.status is not StepStatus.SUSPENDED:
            raise EntityConflictError(
                f"step {found.step_name!r} ({found.step_id}) of run {run_id} is "
                f"{found.status}, not suspended: only a step waiting in suspend() can be "
                "resumed"
            )
        event = StepResumed(run_id=run_id, correlation_id=found.step_id, data=encoded)
        self._woken(await self.world.append(run_id, [event]))

    # -- steering runs -----------------------------------------------------------------------

    async def cancel(self, run_id: str, reason: str | None = None, *, output: Any = None) -> None:
        """Cancel (Dapr: terminate) a run: record ``run_cancelled`` and cancel its steps that
        are running in this process. ``output`` is kept as the run's output.

        Cancelling a cancelled run does nothing; a completed or failed run →
        :class:`~worldflow.RunTerminalError`.
        """
        run_id = id_argument(run_id, "run_id")
        reason = reason_argument(reason)
        event = RunCancelled(run_id=run_id, reason=reason, output=_serde.encode(output))
        result = await self.world.append(run_id, [event])
        driver = self.driver
        driver.cancel_jobs(run_id)
        driver.deliver(run_id, result.events)
        driver.wake(run_id)

    async def suspend(self, run_id: str, reason: str | None = None) -> None:
        """Pause a run: no new work is scheduled (steps already running finish) and hooks and
        events sent meanwhile wait, until :meth:`resume`. Pausing a paused run does nothing."""
        run_id = id_argument(run_id, "run_id")
        reason = reason_argument(reason)
        run = await self.world.get_run(run_id)
        if run.status is RunStatus.SUSPENDED:
            return
        self._woken(await self.world.append(run_id, [RunSuspended(run_id=run_id, reason=reason)]))

    async def resume(self, run_id: str) -> None:
        """Unpause a suspended run; a no-op for a run that is not suspended (as in Dapr)."""
        run = await self.world.get_run(id_argument(run_id, "run_id"))
        if run.status is not RunStatus.SUSPENDED:
            return
        self._woken(await self.world.append(run_id, [RunResumed(run_id=run_id)]))

    async def unstall(self, run_id: str) -> RunStatus:
        """Replay a stalled run against this engine's code; if it replays, the run goes on.

        Engines do this for every stalled run of their workflows when they start, so after
        a deploy (or a rollback) that fixes the code nothing needs calling; this is for an
        engine that is already running. Returns the run's status afterwards (still
        ``stalled`` if the code does not replay it); a run that is not stalled is left as it
        is. A workflow this engine does not have → ``WorkflowNotRegisteredError``.
        """
        run = await self.world.get_run(run_id)
        if run.status is not RunStatus.STALLED:
            return run.status
        self.registry.workflow(run.workflow_name)
        await self.driver.drive(run_id, unstall=True)
        return (await self.world.get_run(run_id)).status

    async def fail(self, run_id: str, reason: str | None = None) -> None:
        """Fail a stalled run for good (its divergence becomes its error).

        For a run whose code will not be fixed: ``Run.result()`` then raises
        ``WorkflowFailedError`` with ``error_name="NondeterminismError"`` and a parent
        workflow sees its child fail. A run that is not stalled →
        :class:`~worldflow.EntityConflictError` (``cancel()`` stops a run that is going).
        """
        run = await self.world.get_run(run_id)
        if run.status is not RunStatus.STALLED:
            raise EntityConflictError(
                f"run {run_id} is {run.status}, not stalled: fail() ends a run whose log the "
                "code no longer replays; to stop a run that is going, cancel() it"
            )
        stalled = run.error
        message = stalled.message if stalled is not None else "its log did not replay"
        if reason:
            message = f"{message}\nFailed for good: {reason}"
        error = ErrorInfo(name="NondeterminismError", message=message, code="nondeterminism")
        self._woken(await self.world.append(run_id, [RunFailed(run_id=run_id, error=error)]))

    async def purge(self, run_id: str) -> None:
        """Delete a finished run's log, views and streams.

        Unknown run → ``RunNotFoundError``; a run still going → ``RunNotTerminalError``.
        """
        await self.world.purge(id_argument(run_id, "run_id"))
        self.driver.forget(run_id)
