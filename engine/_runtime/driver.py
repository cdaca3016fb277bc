"""Driving runs: feeding events in order, appending commands, launching steps, and the
fused append of a step's result with the body's next decisions.

Beside it: the slots and the instance cache (:mod:`.run_cache`), which events to feed
(:mod:`.inbox`), the runs' timers (:mod:`.timers`), delays and flow-control permits
(:mod:`.admission`), and what happens when a run ends or stalls (:mod:`.endings`).

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
from datetime import timedelta
from typing import Any

from worldflow._registry import Registry
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow._runtime.admission import RunAdmission
from worldflow._runtime.endings import RunEndings
from worldflow._runtime.flow import DEFAULT_POLL, FlowGate
from worldflow._runtime.fused import FusedAppends
from worldflow._runtime.handoff import RUN_QUEUE, STEP_QUEUE
from worldflow._runtime.inbox import from_inbox, only_new_steps, read_log, steps_wait
from worldflow._runtime.ownership import RunOwner
from worldflow._runtime.run_cache import RunCache, unreserve
from worldflow._runtime.slot import Slot, aware
from worldflow._runtime.step_job import StepJob, release
from worldflow._runtime.step_runner import StepRunner
from worldflow._runtime.timers import RunTimers, Spawn
from worldflow.errors import (
    EntityConflictError,
    OwnershipLostError,
    RunNotFoundError,
    RunOwnedElsewhereError,
    RunTerminalError,
    WorkflowNotRegisteredError,
)
from worldflow.worlds import (
    AnyEvent,
    RunStarted,
    RunStatus,
    RunUnstalled,
    StepCreated,
    StepStarted,
    WaitCompleted,
    WorkflowRun,
    World,
)
from worldflow.worlds._clock import Clock

__all__ = ["RUN_QUEUE", "STEP_QUEUE", "Driver", "Slot"]

log = logging.getLogger("worldflow.engine")

_MAX_CONFLICTS = 8  # re-drives from the log in a row before giving the run a rest
_MAX_RETRY_DELAY = 30.0


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
        self.cache = RunCache(clock=clock, max_cached_runs=max_cached_runs)
        self._slots = self.cache.slots  # the cache's own dict: read on every step
        self.timers = RunTimers(clock=clock, spawn=spawn, drive=self.drive)
        self.flow = FlowGate(
            world=world, clock=clock, owner=self.owner, wake_run=self.wake, poll=permit_poll
        )
        self.admission = RunAdmission(flow=self.flow, clock=clock, timers=self.timers)
        self.endings = RunEndings(
            world=world,
            registry=registry,
            owner=self.owner,
            flow=self.flow,
            spawn=spawn,
            cache=self.cache,
            timers=self.timers,
            wake=self.wake,
            deliver=self.deliver,
            cancel_jobs=self.cancel_jobs,
        )
        self.fused = FusedAppends(self)
        """Appends of an event fed to the cached instance first, with what the body did on it
        (a step's result, a start, a hook's payload)."""
        self.steps = StepRunner(
            world=world,
            registry=registry,
            clock=clock,
            deliver=self._deliver_step,
            complete=self.fused.complete,
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
        return self.cache.slot(run_id)

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
            if slot.again:
                # A drive was asked for while this one was refused: its append carried a
                # fence from before, and the request may come from this engine's claim of
                # the run since (a restarted world, a late heartbeat). Drive again from the
                # log, whose owner decides; dropping it would leave the run, owned by a live
                # engine, undriven for good.
                slot.again = False
                self.wake(run_id)
        except Exception:
            log.exception("run %s: driving failed", run_id)
            self._retry_later(slot)
        finally:
            slot.driving = False
            self.cache.release(slot)
            if len(self.cache.lru) > self.cache.max_cached_runs:
                self.cache.trim()  # insertions could not evict runs that were being driven

    def _lost(self, slot: Slot, exc: Exception) -> None:
        """Another engine owns the run now: stop driving it here (its in-flight steps may
        still finish: anyone may record a result, and the first one wins)."""
        log.info("run %s: no longer driven by this engine (%s)", slot.run_id, exc)
        self.timers.disarm(slot)
        self.cache.drop_instance(slot)
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
        self.cache.drop_instance(slot)
        at = self.clock.now() + timedelta(seconds=delay)
        if slot.timer_at is None or at < slot.timer_at:
            self.timers.arm(slot, at)

    def evict(self, run_id: str | None = None) -> int:
        """Drop cached instances (all, or one run's) so the next drive replays from the log.

        Returns how many were dropped. Runs being driven right now are kept.
        """
        return self.cache.evict(run_id)

    def forget(self, run_id: str) -> None:
        """The run was purged: drop everything this driver remembers of it."""
        self.evict(run_id)
        self.endings.finalized.pop(run_id, None)
        slot = self._slots.get(run_id)
        if slot is not None:
            self.cache.release(slot)

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
        return list(self.cache.lru)

    def close(self) -> None:
        """Drop every instance (engine shutdown; tasks are cancelled by the engine)."""
        self.cache.close()

    # -- one drive ---------------------------------------------------------------------------

    async def _drive_once(self, slot: Slot, handoff: list[StepJob] | None) -> None:
        if slot.instance is None:
            progress = await self._rebuild(slot)
        else:
            self.cache.lru.move_to_end(slot.run_id)
            progress = self._feed(slot, await self._take(slot))
        if progress is None:
            return
        await self._go_on(slot, progress, handoff)

    async def _go_on(self, slot: Slot, progress: Progress, handoff: list[StepJob] | None) -> None:
        settled = await self._settle(slot, progress)
        if settled is None:
            return
        if settled.stalled:
            await self.endings.stalled(slot)
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
            await self.endings.finished(slot, run)
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
            if run.start_at is not None and self.admission.not_yet(slot, run.start_at):
                return None  # delayed: its timer drives it when it is due
            if definition.limits is not None and not await self.admission.admit(
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
        elif definition.limits is not None and not await self.admission.admit(
            slot, run, definition, starting=False
        ):
            return None  # its permit lapsed (a takeover) and is someone else's now
        instance = WorkflowInstance(definition, run, registry=self.registry)
        slot.reset()
        slot.instance = instance
        self.replays += 1
        self.cache.lru[slot.run_id] = slot
        self.cache.trim()
        progress = self._feed(slot, await self._take(slot))
        if run.status is RunStatus.STALLED and progress is not None:
            slot.stalled_with = run.error.message if run.error is not None else ""
            if not progress.stalled:
                # This code replays the log: the run goes on (with whatever it owes).
                log.info("run %s replays against the code now deployed: unstalled", run.run_id)
                progress.commands.insert(0, RunUnstalled(run_id=run.run_id))
        if progress is not None and not progress.finished:
            children = instance.children_waiting()
            if children:
                # A child may have ended while nobody could tell its parent (a crash). Told
                # now, in this drive (it was a task of its own): a child whose end is in the
                # log already ended first, so a child recovered beside the parent must not
                # report before it (a FirstOf over children picked the wrong winner).
                await self.endings.check_children(slot.run_id, children)
        return progress

    async def _take(self, slot: Slot) -> list[AnyEvent]:
        """The events to feed next: the inbox if it continues the instance, else the log."""
        events = from_inbox(slot)
        if events is not None:
            return events
        slot.fetch = False
        instance = slot.instance
        assert instance is not None
        return await read_log(self.world, slot.run_id, instance.last_seq)

    def _feed(self, slot: Slot, events: list[AnyEvent]) -> Progress | None:
        instance = slot.instance
        assert instance is not None
        if events:
            slot.track(events)
        try:
            return instance.feed(events, describe=False)
        except ValueError:
            log.exception("run %s: feeding events failed; replaying from the log", slot.run_id)
            self.cache.drop_instance(slot)
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
                unreserve(slot)
                raise
            except EntityConflictError as exc:
                unreserve(slot)
                self._conflict(slot, exc)
                return None
            except BaseException:
                unreserve(slot)
                if slot.instance is not None:
                    self.cache.drop_instance(slot)
                raise
            instance = slot.instance
            if instance is None:  # evicted meanwhile (engine closing)
                unreserve(slot)
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
                and only_new_steps(stored)
            ):
                # Only new steps: feeding their creation back changes nothing the body can
                # see, so it waits in the inbox and goes in with the steps' results.
                return steps_wait(slot, stored, progress)
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

    def _conflict(self, slot: Slot, exc: EntityConflictError) -> None:
        """The log moved under us: read what is new (the instance drops commands the log
        already has); after repeated conflicts, rebuild the instance from the whole log."""
        slot.conflicts += 1
        if slot.conflicts > 2:
            self.cache.drop_instance(slot)
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
        self.cache.drop_instance(slot)

    async def _after(self, slot: Slot, progress: Progress, handoff: list[StepJob] | None) -> None:
        if progress.finished:
            await self.endings.finished(slot, slot.view)
            return
        if progress.suspended:
            self.timers.disarm(slot)
            return
        pending, jobs = progress.pending_steps, slot.jobs
        # The set test runs in C: a fan-out drives the run once per finished step with
        # every other step pending and in flight, and a Python loop made that quadratic.
        if pending and not jobs.keys() >= set(pending):
            for step_id in pending:
                if step_id not in jobs:
                    self._launch(slot, step_id, handoff)
        if slot.reserved:
            unreserve(slot)  # reserved for steps that did not launch after all
        if progress.waits:
            self.timers.arm(slot, min(aware(at) for _, at in progress.waits))
        elif slot.timer is not None:
            self.timers.disarm(slot)

    # -- steps -------------------------------------------------------------------------------

    def _launch(self, slot: Slot, step_id: str, handoff: list[StepJob] | None) -> None:
        instance = slot.instance
        call = None if instance is None else instance.step_call(step_id)
        if call is None or call.suspended:
            return
        reserved = slot.reserved.pop(step_id, None)
        # A new step's creation (and, when reserved, its step_started) may still wait in the
        # inbox, not fed (see steps_wait): the log then has that one attempt started.
        attempt = call.attempts if call.created else int(reserved is not None)
        job = StepJob(
            run_id=slot.run_id,
            step_id=step_id,
            step_name=call.step_name,
            input=call.input,
            workflow=slot.metadata(),
            attempt=attempt,
            retry_after=call.retry_after,
            resume_data=call.resume_data,
            reserved=reserved,
        )
        if reserved is not None:
            # step_started is recorded with the creation: the job starts at that attempt.
            job.attempt = attempt - 1
        if handoff is not None and not handoff:
            handoff.append(job)
            slot.jobs[step_id] = job
            return
        task = self._spawn(self._run_jobs(job), f"step {call.step_name} {step_id}")
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
            self.cache.release(slot)

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
