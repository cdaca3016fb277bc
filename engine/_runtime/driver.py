"""Driving runs: the cache of live instances, feeding events in order, appending commands,
timers, launching steps, and what happens when a run ends.

One :class:`Slot` per run this engine is working on. Driving a run is serialized per slot (a
second request while one drive is under way just asks it to go round again), and goes:

1. get the instance: the cached one (live path), or a fresh one fed the whole log (replay);
2. take the new events: those our own appends returned (the slot's inbox), or, when they do not
   continue the instance's ``last_seq`` without a gap (or someone else appended), the log after
   ``last_seq`` from ``list_events``; feed them;
3. append the instance's commands as one batch, put the stored events in the inbox, feed them
   back, repeat until there are no commands; complete due timers the same way;
4. launch the pending steps that are not in flight here, and arm the run's next timer.

An ``EntityConflictError`` on an append means the log moved in a way the instance did not see
(a concurrent cancel, a timer completed elsewhere): the instance is evicted and the run is
driven again from the log. Everything this module keeps in memory is a cache of the log: after
a crash, recovery (``Engine.__aenter__``) drives every orphaned run from its log again.

Appends carry this engine's fence (:class:`RunOwner`). A run owned by another engine is not
driven here; a ``RunOwnedElsewhereError`` (it was taken over) drops the run at once, with no
re-read and no retry: its new owner drives it.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import msgspec

from worldflow._registry import Registry, WorkflowDefinition
from worldflow._replay.child_contract import CHILD_TOKEN_PREFIX, child_hook_token, child_outcome
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow._runtime.flow import DEFAULT_POLL, FlowGate
from worldflow._runtime.handoff import RUN_QUEUE, STEP_QUEUE, enqueue_run
from worldflow._runtime.ownership import RunOwner
from worldflow._runtime.slot import Slot, aware
from worldflow._runtime.step_runner import StepJob, StepRunner, release
from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    NondeterminismError,
    OwnershipLostError,
    RunNotFoundError,
    RunOwnedElsewhereError,
    RunTerminalError,
    WorkflowNotRegisteredError,
)
from worldflow.worlds import (
    AnyEvent,
    ChildEnded,
    ErrorInfo,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStalled,
    RunStarted,
    RunStatus,
    RunUnstalled,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepStarted,
    WaitCompleted,
    WorkflowRun,
    World,
)
from worldflow.worlds._clock import Clock

__all__ = ["RUN_QUEUE", "STEP_QUEUE", "Driver", "Slot"]

log = logging.getLogger("worldflow.engine")

_PAGE = 1000
_MAX_CONFLICTS = 8  # re-drives from the log in a row before giving the run a rest
_FINALIZED_MEMORY = 10_000
_MAX_RETRY_DELAY = 30.0
_SOON = timedelta(seconds=30)  # a run with a timer due this soon is kept in the cache
_OVERFLOW = 10  # ... up to this many times max_cached_runs
_TRIM_LOOK = 16  # cache entries one trim looks at
_TERMINAL = (RunCompleted, RunFailed, RunCancelled)

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any] | None"]


class Driver:
    """Drives the runs of one engine (see the module docstring).

    Args:
        world: The world.
        registry: The engine's workflows (and the step lookup).
        clock: Time for timers and backoff.
        spawn: Starts an engine-owned task (``None`` once the engine is closing).
        max_cached_runs: Live instances kept in memory (least recently driven evicted first).
        max_concurrent_steps: Step attempts running at once across the engine.
        step_services: Passed to steps' contexts (the builtin child-start step uses it).
        owner: The engine's id and its runs' fences (a fresh one: no fences).
        permit_poll: Seconds between asks of a refused flow-control permit.
    """

    def __init__(
        self,
        *,
        world: World,
        registry: Registry,
        clock: Clock,
        spawn: Spawn,
        max_cached_runs: int,
        max_concurrent_steps: int,
        step_services: Any = None,
        owner: RunOwner | None = None,
        permit_poll: float = DEFAULT_POLL,
    ) -> None:
        self.world = world
        self.owner = owner if owner is not None else RunOwner()
        self.registry = registry
        self.clock = clock
        self._spawn = spawn
        self.max_cached_runs = max_cached_runs
        self._slots: dict[str, Slot] = {}
        self._cache: OrderedDict[str, Slot] = OrderedDict()
        self._finalized: OrderedDict[str, None] = OrderedDict()
        self.flow = FlowGate(
            world=world, clock=clock, owner=self.owner, wake_run=self.wake, poll=permit_poll
        )
        self.steps = StepRunner(
            world=world,
            registry=registry,
            clock=clock,
            deliver=self._deliver_step,
            complete=self.complete,
            max_concurrent=max_concurrent_steps,
            services=step_services,
            fence=self.owner.fence,
            flow=self.flow,
        )
        self.replays = 0
        """How many times a run was rebuilt from its log (tests and benchmarks read it)."""

    # -- public entry points -----------------------------------------------------------------

    def slot(self, run_id: str) -> Slot:
        """The slot of ``run_id``, made if needed."""
        slot = self._slots.get(run_id)
        if slot is None:
            slot = self._slots[run_id] = Slot(run_id)
        return slot

    def adopt(self, run: WorkflowRun, events: list[AnyEvent]) -> None:
        """A run this engine just created (``start``): its first events are known."""
        slot = self.slot(run.run_id)
        if slot.instance is None:
            slot.run_view = run
            slot.inbox.extend(events)

    def deliver(self, run_id: str, events: list[AnyEvent]) -> None:
        """Stored events of ``run_id`` that this process appended (saves a read)."""
        slot = self._slots.get(run_id)
        if slot is not None and slot.instance is not None and events:
            slot.inbox.extend(events)

    def wake(self, run_id: str) -> None:
        """Drive ``run_id`` soon, in its own task (which then runs the run's first new step
        itself, if there is one)."""
        self._spawn(self._drive_task(run_id), f"drive {run_id}")

    async def _drive_task(self, run_id: str) -> None:
        handoff: list[StepJob] = []
        await self.drive(run_id, handoff=handoff)
        if handoff:
            await self._run_jobs(handoff[0])

    async def drive(
        self,
        run_id: str,
        *,
        fetch: bool = False,
        handoff: list[StepJob] | None = None,
        unstall: bool = False,
    ) -> None:
        """Drive the run until it is blocked; see the module docstring.

        ``fetch`` reads the log after what the instance has seen even if our own appends
        say nothing is new (someone else may have appended). ``handoff``: the caller (a step
        task about to end) will run the first step this drive launches itself, saving a task.
        ``unstall``: replay a stalled run against this code (otherwise it is left alone).
        """
        slot = self.slot(run_id)
        if fetch:
            slot.fetch = True
        if unstall:
            slot.unstall = True
        if slot.driving:
            slot.again = True
            return
        slot.driving = True
        try:
            while True:
                slot.again = False
                await self._drive_once(slot, handoff)
                if not slot.again:
                    break
            slot.failures = 0
        except (RunOwnedElsewhereError, OwnershipLostError) as exc:
            self._lost(slot, exc)
        except Exception:
            log.exception("run %s: driving failed", run_id)
            self._retry_later(slot)
        finally:
            slot.driving = False
            self._release(slot)
            if len(self._cache) > self.max_cached_runs:
                self._trim_cache()  # insertions could not evict runs that were being driven

    def _lost(self, slot: Slot, exc: Exception) -> None:
        """Another engine owns the run now: stop driving it here (its in-flight steps may
        still finish: anyone may record a result, and the first one wins)."""
        log.info("run %s: no longer driven by this engine (%s)", slot.run_id, exc)
        self._disarm(slot)
        self._drop_instance(slot)
        self.owner.forget(slot.run_id)

    def _retry_later(self, slot: Slot) -> None:
        """A world error (or an engine bug): drive again from the log a little later, backing
        off, rather than leave the run stuck until the next restart."""
        slot.failures += 1
        delay = min(_MAX_RETRY_DELAY, 0.05 * 2 ** min(slot.failures - 1, 16))
        log.warning(
            "run %s: %d failure(s) in a row; driving it again from the log in %.2fs",
            slot.run_id,
            slot.failures,
            delay,
        )
        self._drop_instance(slot)
        at = self.clock.now() + timedelta(seconds=delay)
        if slot.timer_at is None or at < slot.timer_at:
            self._arm(slot, at)

    def evict(self, run_id: str | None = None) -> int:
        """Drop cached instances (all, or one run's) so the next drive replays from the log.

        Returns how many were dropped. Runs being driven right now are kept.
        """
        if run_id is None:
            victims = list(self._cache.values())
        else:
            one = self._cache.get(run_id)
            victims = [] if one is None else [one]
        dropped = 0
        for slot in victims:
            if not slot.driving:
                self._drop_instance(slot)
                dropped += 1
                self._release(slot)
        return dropped

    def forget(self, run_id: str) -> None:
        """The run was purged: drop everything this driver remembers of it."""
        self.evict(run_id)
        self._finalized.pop(run_id, None)
        slot = self._slots.get(run_id)
        if slot is not None:
            self._release(slot)

    def progress(self, run_id: str) -> Progress | None:
        """The cached instance's :class:`Progress` (``blocked_on`` etc.), if it is cached."""
        slot = self._slots.get(run_id)
        if slot is None or slot.instance is None:
            return None
        return slot.instance.progress()

    def cancel_jobs(self, run_id: str) -> int:
        """Cancel the run's steps executing in this process; returns how many."""
        slot = self._slots.get(run_id)
        if slot is None:
            return 0
        jobs = list(slot.jobs.values())
        for job in jobs:
            job.cancel()
        return len(jobs)

    def cached_runs(self) -> list[str]:
        """Run ids with a live instance, least recently driven first."""
        return list(self._cache)

    def close(self) -> None:
        """Drop every instance (engine shutdown; tasks are cancelled by the engine)."""
        for slot in list(self._cache.values()):
            self._drop_instance(slot)
        self._slots.clear()

    # -- one drive ---------------------------------------------------------------------------

    async def _drive_once(self, slot: Slot, handoff: list[StepJob] | None) -> None:
        if slot.instance is None:
            progress = await self._rebuild(slot)
        else:
            self._cache.move_to_end(slot.run_id)
            progress = self._feed(slot, await self._take(slot))
        if progress is None:
            return
        await self._go_on(slot, progress, handoff)

    async def _go_on(self, slot: Slot, progress: Progress, handoff: list[StepJob] | None) -> None:
        settled = await self._settle(slot, progress)
        if settled is None:
            return
        if settled.stalled:
            await self._stalled(slot)
            return
        slot.conflicts = 0
        await self._after(slot, settled, handoff)

    async def _rebuild(self, slot: Slot) -> Progress | None:
        run = slot.run_view
        slot.run_view = None
        if run is None:
            slot.inbox.clear()
            slot.fetch = True
            try:
                run = await self.world.get_run(slot.run_id)
            except RunNotFoundError:
                return None  # purged
        if run.status.is_terminal:
            await self._finished(slot, run)
            return None
        unstall, slot.unstall = slot.unstall, False
        if run.status is RunStatus.STALLED and not unstall:
            return None  # left alone until code that may replay it asks (recover, unstall)
        if not self.owner.saw(run):
            return None  # another engine drives it
        try:
            definition = self.registry.workflow(run.workflow_name)
        except WorkflowNotRegisteredError:
            return None  # another engine's workflow
        if run.status is RunStatus.PENDING:
            if run.start_at is not None and self._not_yet(slot, run.start_at):
                return None  # delayed: its timer drives it when it is due
            if definition.limits is not None and not await self._admit(
                slot, run, definition, starting=True
            ):
                return None  # over a limit: driven again when a permit may be free
            try:
                started = await self.world.append(
                    run.run_id, [RunStarted(run_id=run.run_id)], fence=self.owner.fence(run.run_id)
                )
            except RunTerminalError:
                slot.again = True
                return None
            run = started.run
            self.owner.saw(run)
            slot.fetch = True
        elif definition.limits is not None and not await self._admit(
            slot, run, definition, starting=False
        ):
            return None  # its permit lapsed (a takeover) and is someone else's now
        instance = WorkflowInstance(definition, run, registry=self.registry)
        slot.reset()
        slot.instance = instance
        self.replays += 1
        self._cache[slot.run_id] = slot
        self._trim_cache()
        progress = self._feed(slot, await self._take(slot))
        if run.status is RunStatus.STALLED and progress is not None:
            slot.stalled_with = run.error.message if run.error is not None else ""
            if not progress.stalled:
                # This code replays the log: the run goes on (with whatever it owes).
                log.info("run %s replays against the code now deployed: unstalled", run.run_id)
                progress.commands.insert(0, RunUnstalled(run_id=run.run_id))
        if progress is not None and slot.child_hooks and not slot.terminal:
            # A child may have ended while nobody could tell its parent (a crash).
            self._spawn(self._check_children(slot.run_id, dict(slot.child_hooks)), "children")
        return progress

    def _not_yet(self, slot: Slot, start_at: datetime) -> bool:
        """Whether a delayed run is not due yet (then its timer is armed for when it is)."""
        at = aware(start_at)
        if at <= self.clock.now():
            return False
        self._arm(slot, at)
        return True

    async def _admit(
        self, slot: Slot, run: WorkflowRun, definition: WorkflowDefinition, *, starting: bool
    ) -> bool:
        """Take the run's flow-control permits (its rate permit only when ``starting``);
        False when one is refused (the run's timer is then armed for the next ask)."""
        limits = definition.limits
        assert limits is not None
        args: tuple[Any, ...] | None = None
        kwargs: dict[str, Any] | None = None
        if limits.needs_arguments:
            args, kwargs = definition.decode_input(run.input)
        asks = limits.asks(run.run_id, args, kwargs, resource_id=run.resource_id, rate=starting)
        if not asks:
            return True
        try:
            delay = await self.flow.try_acquire(asks, run_id=run.run_id, priority=run.priority)
        except RunTerminalError:
            slot.again = True  # ended meanwhile: wrap it up
            return False
        except RunNotFoundError:
            return False  # purged
        if delay is None:
            self.flow.run_admitted(run.run_id, asks)
            slot.permits = [a for a in asks if a.period is None] or None
            return True
        self.flow.run_waits(run.run_id, asks)
        self._arm(slot, self.clock.now() + timedelta(seconds=delay))
        return False

    async def _take(self, slot: Slot) -> list[AnyEvent]:
        """The events to feed next: the inbox if it continues the instance, else the log."""
        events = self._from_inbox(slot)
        if events is not None:
            return events
        slot.fetch = False
        instance = slot.instance
        assert instance is not None
        return await self._fetch(slot.run_id, instance.last_seq)

    def _from_inbox(self, slot: Slot) -> list[AnyEvent] | None:
        """The inbox's events that continue the instance, or ``None`` if the log must be
        read (a gap: someone else appended; or ``slot.fetch``)."""
        instance = slot.instance
        assert instance is not None
        inbox = slot.inbox
        slot.inbox = []
        if slot.fetch:
            return None
        if not inbox:
            return inbox
        expected = instance.last_seq + 1
        if len(inbox) > 1:
            inbox.sort(key=_seq)
        elif inbox[0].seq == expected:
            return inbox  # the usual case: one batch that goes on where the instance is
        out: list[AnyEvent] = []
        for event in inbox:
            if event.seq < expected:
                continue  # already fed (or a duplicate)
            if event.seq != expected:
                return None  # a gap: someone else appended in between
            out.append(event)
            expected += 1
        return out

    async def _fetch(self, run_id: str, after: int) -> list[AnyEvent]:
        events: list[AnyEvent] = []
        while True:
            page = await self.world.list_events(run_id, after_seq=after, limit=_PAGE)
            events.extend(page.items)
            if not page.has_more or not page.items:
                return events
            after = page.items[-1].seq

    def _feed(self, slot: Slot, events: list[AnyEvent]) -> Progress | None:
        instance = slot.instance
        assert instance is not None
        if events:
            slot.track(events)
        try:
            return instance.feed(events, describe=False)
        except ValueError:
            log.exception("run %s: feeding events failed; replaying from the log", slot.run_id)
            self._drop_instance(slot)
            slot.again = True
            return None

    async def _settle(self, slot: Slot, progress: Progress) -> Progress | None:
        """Append commands (and due timers) and feed them back until there is nothing to do."""
        run_id = slot.run_id
        while True:
            if progress.stalled:
                return progress
            commands = progress.commands
            if not commands:
                if progress.finished or progress.suspended or not progress.waits:
                    return progress
                now = self.clock.now()
                commands = [
                    WaitCompleted(run_id=run_id, correlation_id=wait_id)
                    for wait_id, at in progress.waits
                    if aware(at) <= now
                ]
                if not commands:
                    return progress
            else:
                commands = self._with_starts(slot, commands)
            try:
                result = await self.world.append(run_id, commands, fence=self.owner.fence(run_id))
            except RunOwnedElsewhereError:
                self._unreserve(slot)
                raise
            except EntityConflictError as exc:
                self._unreserve(slot)
                self._conflict(slot, exc)
                return None
            except BaseException:
                self._unreserve(slot)
                if slot.instance is not None:
                    self._drop_instance(slot)
                raise
            instance = slot.instance
            if instance is None:  # evicted meanwhile (engine closing)
                self._unreserve(slot)
                return None
            slot.view = result.run
            if result.run.owner_epoch:
                self.owner.saw(result.run)  # a claim shows in the epoch
            stored = result.events
            if (
                not slot.inbox
                and not slot.fetch
                and stored
                and stored[0].seq == instance.last_seq + 1
                and _only_new_steps(stored)
            ):
                # Only new steps: feeding their creation back changes nothing the body can
                # see, so it waits in the inbox and goes in with the steps' results (one feed
                # per step instead of two). The launch list comes from the batch itself.
                slot.inbox = stored
                slot.track(stored)
                created = [e.correlation_id for e in stored if type(e) is StepCreated]
                return Progress(
                    commands=[],
                    finished=False,
                    pending_steps=[*progress.pending_steps, *(c for c in created if c)],
                    waits=progress.waits,
                    suspended=progress.suspended,
                    blocked_on=progress.blocked_on,
                    error=None,
                )
            slot.inbox.extend(stored)
            fed = self._feed(slot, await self._take(slot))
            if fed is None:
                return None
            progress = fed

    def _with_starts(self, slot: Slot, commands: list[AnyEvent]) -> list[AnyEvent]:
        """The commands, with ``step_started`` after each new step that can run right now
        (its limits are free): the first attempt is then recorded in the same append."""
        out: list[AnyEvent] | None = None
        for index, command in enumerate(commands):
            if type(command) is not StepCreated:
                if out is not None:
                    out.append(command)
                continue
            assert isinstance(command, StepCreated)
            limits = self.steps.try_reserve(command.step_name)
            if out is None:
                if limits is None:
                    continue
                out = list(commands[:index])
            out.append(command)
            if limits is not None:
                slot.reserved[command.correlation_id] = limits
                out.append(StepStarted(run_id=slot.run_id, correlation_id=command.correlation_id))
        return commands if out is None else out

    def _unreserve(self, slot: Slot) -> None:
        reserved = slot.reserved
        if reserved:
            slot.reserved = {}
            for limits in reserved.values():
                release(limits)

    def _conflict(self, slot: Slot, exc: EntityConflictError) -> None:
        """The log moved under us: read what is new (the instance drops commands the log
        already has); after repeated conflicts, rebuild the instance from the whole log."""
        slot.conflicts += 1
        if slot.conflicts > 2:
            self._drop_instance(slot)
        if slot.conflicts <= _MAX_CONFLICTS:
            log.debug("run %s: %s; reading the log again", slot.run_id, exc)
            slot.fetch = True
            slot.again = True
            return
        log.error(
            "run %s: %d conflicting appends in a row (last: %s); leaving it until it is "
            "driven again",
            slot.run_id,
            slot.conflicts,
            exc,
        )
        slot.conflicts = 0
        self._drop_instance(slot)

    async def _after(self, slot: Slot, progress: Progress, handoff: list[StepJob] | None) -> None:
        if progress.finished or slot.terminal:
            await self._finished(slot, slot.view)
            return
        if progress.suspended:
            self._disarm(slot)
            return
        pending, jobs = progress.pending_steps, slot.jobs
        # The set test runs in C: a fan-out drives the run once per finished step with
        # every other step pending and in flight, and a Python loop made that quadratic.
        if pending and not jobs.keys() >= set(pending):
            for step_id in pending:
                if step_id not in jobs:
                    self._launch(slot, step_id, handoff)
        self._unreserve(slot)  # reserved for steps that did not launch after all
        if progress.waits:
            self._arm(slot, min(aware(at) for _, at in progress.waits))
        else:
            self._disarm(slot)

    async def _stalled(self, slot: Slot) -> None:
        """The log did not replay against this code: record ``run_stalled`` (once per
        divergence) and stop driving the run; steps already running finish and record."""
        instance = slot.instance
        assert instance is not None
        error = instance.error
        assert isinstance(error, NondeterminismError)
        before = slot.stalled_with
        self._disarm(slot)
        self._drop_instance(slot)
        info = ErrorInfo(name=type(error).__name__, message=str(error), code=error.code)
        if before == info.message:
            log.info("run %s is still stalled: the code deployed does not replay it", slot.run_id)
            return
        event = RunStalled(
            run_id=slot.run_id,
            error=info,
            position=error.position,
            recorded=error.recorded,
            current=error.current,
        )
        try:
            await self.world.append(slot.run_id, [event], fence=self.owner.fence(slot.run_id))
        except (RunTerminalError, RunNotFoundError):
            return  # it ended meanwhile (cancelled, purged)
        log.warning(
            "run %s is stalled (nothing drives it until code that replays it is deployed, "
            "or it is failed for good with fail()):\n%s",
            slot.run_id,
            error,
        )

    # -- a step's result and what the body does next, in one append --------------------------

    async def complete(
        self, job: StepJob, event: StepCompleted | StepFailed, handoff: list[StepJob] | None
    ) -> bool:
        """Record a step's final result fused with the body's next decisions; False when
        the fast path does not apply or the append was refused (nothing was recorded: the
        caller records the result alone, and the run is driven again from its log).

        The result is fed to the cached instance first, stamped with the seq it will get
        and the engine's time; then the result and the commands it produced go out in one
        append whose precondition (``expected_seq``) is that nobody appended meanwhile.
        """
        slot = self._slots.get(job.run_id)
        if slot is None or slot.instance is None or slot.driving:
            return False
        pending = self._from_inbox(slot)
        if pending is None:
            slot.fetch = True  # the inbox had a gap: the next drive reads the log
            return False
        self._forget_job(slot, job)
        slot.driving = True
        fused = False
        try:
            fused = await self._fused(slot, pending, event, handoff)
            while fused and slot.again:
                slot.again = False
                await self._drive_once(slot, handoff)
            slot.failures = 0
        except (RunOwnedElsewhereError, OwnershipLostError) as exc:
            self._lost(slot, exc)
        except Exception:
            log.exception("run %s: driving failed", slot.run_id)
            if fused:
                self._retry_later(slot)
            else:
                self._drop_instance(slot)
        finally:
            slot.driving = False
            self._release(slot)
            if len(self._cache) > self.max_cached_runs:
                self._trim_cache()
        return fused

    async def _fused(
        self,
        slot: Slot,
        pending: list[AnyEvent],
        event: StepCompleted | StepFailed,
        handoff: list[StepJob] | None,
    ) -> bool:
        instance = slot.instance
        assert instance is not None
        run_id = slot.run_id
        expected = pending[-1].seq if pending else instance.last_seq
        record = msgspec.structs.replace(event, created_at=aware(self.clock.now()))
        progress = self._feed(slot, [*pending, msgspec.structs.replace(record, seq=expected + 1)])
        if progress is None:
            return False  # the instance is gone (feeding failed): the log decides
        if progress.stalled:
            self._drop_instance(slot)  # recorded alone; the rebuild records the divergence
            return False
        commands = self._with_starts(slot, progress.commands) if progress.commands else []
        try:
            result = await self.world.append(
                run_id,
                [record, *commands],
                fence=self.owner.fence(run_id),
                expected_seq=expected,
            )
        except Exception:
            # Someone appended meanwhile (SeqConflictError), the run ended or moved to
            # another engine, a world error: the instance saw an event the log does not
            # have, so it goes; the caller records the result alone.
            self._unreserve(slot)
            self._drop_instance(slot)
            return False
        except BaseException:
            self._unreserve(slot)
            self._drop_instance(slot)
            raise
        if slot.instance is None:  # evicted meanwhile (engine closing)
            self._unreserve(slot)
            return True
        slot.view = result.run
        if result.run.owner_epoch:
            self.owner.saw(result.run)
        rest = result.events[1:]
        if rest and not slot.inbox and not slot.fetch and _only_new_steps(rest):
            # As in _settle: new steps wait in the inbox and go in with their results.
            slot.inbox = rest
            slot.track(rest)
            created = [e.correlation_id for e in rest if type(e) is StepCreated]
            progress = Progress(
                commands=[],
                finished=False,
                pending_steps=[*progress.pending_steps, *(c for c in created if c)],
                waits=progress.waits,
                suspended=progress.suspended,
                blocked_on=progress.blocked_on,
                error=None,
            )
            slot.conflicts = 0
            await self._after(slot, progress, handoff)
            return True
        if rest:
            slot.inbox.extend(rest)
            fed = self._feed(slot, await self._take(slot))
            if fed is None:
                return True
            progress = fed
        else:
            progress.commands = []
        await self._go_on(slot, progress, handoff)
        return True

    # -- steps -------------------------------------------------------------------------------

    def _launch(self, slot: Slot, step_id: str, handoff: list[StepJob] | None) -> None:
        track = slot.steps.get(step_id)
        if track is None or track.suspended:
            return
        reserved = slot.reserved.pop(step_id, None)
        job = StepJob(
            run_id=slot.run_id,
            step_id=step_id,
            step_name=track.name,
            input=track.input,
            workflow=slot.metadata(),
            attempt=track.attempt,
            retry_after=track.retry_after,
            resume_data=track.resume_data,
            reserved=reserved,
        )
        if reserved is not None:
            # step_started is recorded with the creation: the job starts at that attempt.
            job.attempt = track.attempt - 1
        if handoff is not None and not handoff:
            handoff.append(job)
            slot.jobs[step_id] = job
            return
        task = self._spawn(self._run_jobs(job), f"step {track.name} {step_id}")
        if task is not None:
            job.task = task
            slot.jobs[step_id] = job
        else:
            release(reserved)

    async def _run_jobs(self, job: StepJob) -> None:
        """Run ``job``; then, while finishing a step hands this task the run's next step,
        run that one too (a chain of steps runs in one task)."""
        current: StepJob | None = job
        while current is not None:
            current.task = asyncio.current_task()
            handoff: list[StepJob] = []
            try:
                await self.steps.run(current, handoff)
            except Exception:
                # The step's result could not be recorded (a world error): the step is still
                # pending in the log, so drive the run again later to launch it again.
                log.exception("run %s: step %s failed to run", current.run_id, current.step_id)
                self._forget(current)
                slot = self.slot(current.run_id)
                if slot.driving:  # the drive under way launches it again
                    slot.fetch = slot.again = True
                else:
                    self._retry_later(slot)
                return
            finally:
                self._forget(current)
            current = handoff[0] if handoff else None

    def _forget(self, job: StepJob) -> None:
        slot = self._slots.get(job.run_id)
        if slot is not None:
            self._forget_job(slot, job)

    def _forget_job(self, slot: Slot, job: StepJob) -> None:
        if slot.jobs.get(job.step_id) is job:
            del slot.jobs[job.step_id]
            self._release(slot)

    async def _deliver_step(
        self,
        job: StepJob,
        events: list[AnyEvent],
        final: bool,
        handoff: list[StepJob] | None,
    ) -> None:
        slot = self._slots.get(job.run_id)
        if final and slot is not None:
            # Out of the in-flight set before the drive, so a resume_step that lands now
            # finds the step free to launch again.
            self._forget_job(slot, job)
        if slot is not None and slot.instance is not None and events:
            slot.inbox.extend(events)
        if final:
            await self.drive(job.run_id, fetch=not events, handoff=handoff)

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, slot: Slot, at: datetime) -> None:
        if slot.timer is not None and slot.timer_at == at:
            return
        self._disarm(slot)
        task = self._spawn(self._timer(slot, at), f"timer {slot.run_id}")
        if task is not None:
            slot.timer = task
            slot.timer_at = at

    def _disarm(self, slot: Slot) -> None:
        timer = slot.timer
        if timer is not None:
            slot.timer = None
            slot.timer_at = None
            if timer is not asyncio.current_task():
                timer.cancel()

    async def _timer(self, slot: Slot, at: datetime) -> None:
        delay = (at - self.clock.now()).total_seconds()
        if delay > 0:
            await self.clock.sleep(delay)
        if slot.timer is asyncio.current_task():
            slot.timer = None
            slot.timer_at = None
        await self.drive(slot.run_id)

    # -- the end of a run --------------------------------------------------------------------

    async def _finished(self, slot: Slot, run: WorkflowRun | None) -> None:
        self._disarm(slot)
        self._drop_instance(slot)
        slot.inbox.clear()
        self.owner.forget(slot.run_id)
        permits, slot.permits = slot.permits, None
        if permits:
            await self.flow.release(permits)  # the world voids them anyway: this is prompt
        if run is not None and run.status is RunStatus.CANCELLED:
            self.cancel_jobs(slot.run_id)  # cancelled by someone else: its steps stop here
        if slot.run_id in self._finalized:
            return
        self._finalized[slot.run_id] = None
        if len(self._finalized) > _FINALIZED_MEMORY:
            self._finalized.popitem(last=False)
        # In this drive rather than in a task of its own: a task per finished run cost more
        # than the wrap-up, which for most runs is one read that finds nothing to close.
        try:
            await self._wrap_up(slot.run_id, run)
        except Exception:
            log.exception("run %s: wrapping up the finished run failed", slot.run_id)

    async def _wrap_up(self, run_id: str, run: WorkflowRun | None) -> None:
        """Close the run's streams, tell a parent its child ended, cancel a cancelled run's
        children."""
        try:
            if run is None or not run.status.is_terminal:
                run = await self.world.get_run(run_id)
            for stream in await self.world.list_streams(run_id):
                if not stream.closed:
                    await self.world.close_stream(run_id, stream.name)
            if run.parent_run_id is not None:
                await self.notify_parent(run)
            if run.status is RunStatus.CANCELLED:
                await self._cancel_children(run)
        except RunNotFoundError:
            return  # purged already

    async def notify_parent(self, child: WorkflowRun) -> None:
        """Tell the parent its child ended: ``child_ended`` on its ``worldflow:child:`` hook."""
        parent_id = child.parent_run_id
        if parent_id is None:
            return
        try:
            hook = await self.world.get_hook_by_token(child_hook_token(child.run_id))
            if hook.received_count or hook.run_id != parent_id:
                return
            ended = ChildEnded(
                run_id=parent_id,
                correlation_id=hook.hook_id,
                child_run_id=child.run_id,
                outcome=child_outcome(child),
            )
            result = await self.world.append(parent_id, [ended])
        except (HookNotFoundError, RunNotFoundError, EntityConflictError):
            return  # the parent is gone or has stopped waiting
        self.deliver(parent_id, result.events)
        self.wake_or_enqueue(result.run)

    def wake_or_enqueue(self, run: WorkflowRun) -> None:
        """Drive ``run`` here if this engine has its workflow and nobody else owns it, else
        queue it for its owner (or any engine serving it)."""
        if self.registry.has_workflow(run.workflow_name) and self.owner.drives(run):
            self.wake(run.run_id)
        else:
            self._spawn(enqueue_run(self.world, run), f"enqueue {run.run_id}")

    async def _check_children(self, parent_id: str, children: dict[str, str]) -> None:
        for child_id in children.values():
            try:
                child = await self.world.get_run(child_id)
            except RunNotFoundError:
                continue  # not started yet: the start_child step will start it
            if child.status.is_terminal:
                await self.notify_parent(child)

    async def _cancel_children(self, run: WorkflowRun) -> None:
        page = await self.world.list_hooks(run_id=run.run_id)
        for hook in page.items:
            if not hook.token.startswith(CHILD_TOKEN_PREFIX) or hook.received_count:
                continue
            child_id = hook.token[len(CHILD_TOKEN_PREFIX) :]
            try:
                result = await self.world.append(
                    child_id,
                    [
                        RunCancelled(
                            run_id=child_id, reason=f"its parent run {run.run_id} was cancelled"
                        )
                    ],
                )
            except (RunNotFoundError, EntityConflictError):
                continue
            if self.owner.drives(result.run):
                self.cancel_jobs(child_id)
            self.deliver(child_id, result.events)
            self.wake_or_enqueue(result.run)

    # -- cache -------------------------------------------------------------------------------

    def _drop_instance(self, slot: Slot) -> None:
        self._unreserve(slot)
        instance = slot.instance
        if instance is not None:
            slot.instance = None
            self._cache.pop(slot.run_id, None)
            instance.close()
        slot.reset()
        slot.inbox.clear()

    def _trim_cache(self) -> None:
        """Evict the least recently driven instances beyond ``max_cached_runs``.

        A run that will have work soon (a timer due within :data:`_SOON`, a step running
        here) is kept past the limit, up to :data:`_OVERFLOW` times it: evicting it would
        only rebuild it from its log a moment later. With more runs asleep than the cache
        holds, plain LRU evicted exactly the runs whose timers fire next, and every wake was
        a rebuild. A kept run moves to the recent end, so each trim looks at a few entries
        (O(1) per insertion) even when every cached run is kept.
        """
        cache = self._cache
        limit = self.max_cached_runs
        if len(cache) <= limit:
            return
        hard = limit * _OVERFLOW
        soon = self.clock.now() + _SOON
        looked = 0
        while len(cache) > limit and looked < _TRIM_LOOK:
            looked += 1
            run_id, slot = next(iter(cache.items()))
            busy = slot.driving or (
                len(cache) <= hard
                and (slot.jobs or (slot.timer_at is not None and slot.timer_at <= soon))
            )
            if busy:
                cache.move_to_end(run_id)
                continue
            self._drop_instance(slot)
            self._release(slot)

    def _release(self, slot: Slot) -> None:
        if slot.idle() and self._slots.get(slot.run_id) is slot:
            del self._slots[slot.run_id]


_seq = operator.attrgetter("seq")


def _only_new_steps(events: list[AnyEvent]) -> bool:
    for event in events:
        kind = type(event)
        if kind is not StepCreated and kind is not StepStarted:
            return False
    return True
