"""Fused appends: an event fed to the cached instance *before* it is stored, and appended
together with what the body decided on seeing it, in one append under ``expected_seq``.

Three events go this way when the engine holds the run's instance (or makes it):

* a step's final result (``step_completed`` / ``step_failed``): :meth:`FusedAppends.complete`,
  called by the step runner;
* a new run's ``run_created`` + ``run_started``, when the engine starts a run it drives
  itself: :meth:`FusedAppends.start` builds the instance, and the first append of the run
  holds its first decisions too (under ``expected_seq=0``: a run of that id existing is a
  :class:`~worldflow.SeqConflictError`);
* a ``hook_received`` sent by this engine (``resume_hook`` / ``resume_webhook``) to a run it
  drives: :meth:`FusedAppends.deliver`.

Each event is stamped with the seq it will get and the engine's time, fed to the instance,
and appended with the commands it produced (the next ``step_created`` + ``step_started``,
``hook_created``, ``run_completed`` ...). The world keeps the stamped ``created_at`` (and a
stamped batch gives the views its first event's time), so a replay of the log sees what the
body saw. If the append is refused for any reason (someone appended meanwhile, the run ended
or moved to another engine, a world error) nothing was stored: the instance, which saw an
event the log does not have, is dropped, and the caller records the event the plain way
(alone; the run is then driven from its log; a step's job stays in flight until its result
is stored, so no drive meanwhile starts the step again). A crash before the append loses
nothing that was acknowledged; the batch is atomic, so nothing is recorded twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from worldflow._registry import WorkflowDefinition
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow._runtime.inbox import from_inbox, only_new_steps, steps_wait
from worldflow._runtime.run_cache import unreserve
from worldflow._runtime.slot import Slot, aware
from worldflow._runtime.step_job import StepJob
from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    NotFoundError,
    OwnershipLostError,
    RunOwnedElsewhereError,
    SeqConflictError,
)
from worldflow.worlds import (
    AnyEvent,
    EventResult,
    Fence,
    HookReceived,
    RunCreated,
    RunStarted,
    RunStatus,
    StepCompleted,
    StepFailed,
    WorkflowRun,
)

if TYPE_CHECKING:
    from worldflow._runtime.driver import Driver

__all__ = ["FusedAppends"]

log = logging.getLogger("worldflow.engine")

_REFUSED = (EntityConflictError, NotFoundError, InvalidEventError, OwnershipLostError)
"""A world's refusals of a batch: nothing of it was stored."""


class FusedAppends:
    """The fused appends of one :class:`~worldflow._runtime.driver.Driver` (see the module
    docstring)."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._slots = driver.cache.slots

    # -- the three entry points --------------------------------------------------------------

    async def complete(
        self, job: StepJob, event: StepCompleted | StepFailed, handoff: list[StepJob] | None
    ) -> bool:
        """Record a step's final result fused with the body's next decisions; False when
        the fast path does not apply or the append was refused (nothing was recorded: the
        caller records the result alone, and the run is driven again from its log)."""
        slot = self._slots.get(job.run_id)
        if slot is None or slot.instance is None or slot.driving:
            return False
        pending = from_inbox(slot)
        if pending is None:
            slot.fetch = True  # the inbox had a gap: the next drive reads the log
            return False
        fence = self._driver.owner.fence(job.run_id)
        if await self._run(slot, pending, [event], fence, handoff) is None:
            # Not recorded: the job stays in flight while the caller records the result
            # alone (and waits out a full disk), so a drive meanwhile does not take the
            # step for one whose attempt was lost and start it again.
            return False
        self._driver._forget_job(slot, job)
        return True

    async def deliver(self, event: HookReceived) -> EventResult | None:
        """Record a ``hook_received`` for a run this engine drives, fused with what the body
        does on it; ``None`` when the fast path does not apply or the append was refused
        (nothing was recorded: the caller appends it the plain way)."""
        run_id = event.run_id
        slot = self._slots.get(run_id)
        if slot is None or slot.instance is None or slot.driving or slot.instance.finished:
            return None
        fence = self._driver.owner.fence(run_id)
        if fence is None:
            return None  # not claimed by this engine: its owner drives it
        pending = from_inbox(slot)
        if pending is None:
            slot.fetch = True
            return None
        return await self._run(slot, pending, [event], fence, None, sure=True)

    async def start(
        self, created: RunCreated, definition: WorkflowDefinition, fence: Fence
    ) -> EventResult | None:
        """Create and start a run with its body's first decisions in one append (the
        instance is built here, fed ``run_created`` and ``run_started`` first).

        Returns the append's result; ``None`` when the fast path does not apply or the
        append was refused for any reason but the id (nothing was recorded: the caller
        starts the run the plain way). A run of that id already existing raises
        :class:`~worldflow.SeqConflictError` (the precondition is ``expected_seq=0``).
        """
        driver = self._driver
        run_id = created.run_id
        if run_id in self._slots:
            # This engine knows a run of this id (a taken id, or a start racing a drive):
            # nothing of a live run's slot is touched; the plain start says why not.
            return None
        slot = driver.cache.slot(run_id)
        now = aware(driver.clock.now())
        created = msgspec.structs.replace(created, created_at=now)
        view = WorkflowRun(
            run_id=run_id,
            workflow_name=created.workflow_name,
            status=RunStatus.RUNNING,
            input=created.input,
            created_at=now,
            updated_at=now,
            started_at=now,
            resource_id=created.resource_id,
            metadata=dict(created.metadata),
            state=created.initial_state,
            parent_run_id=created.parent_run_id,
            forked_from=created.forked_from,
            priority=created.priority,
            owner_id=fence.engine_id,
            owner_epoch=1,
        )
        slot.instance = WorkflowInstance(definition, view, registry=driver.registry)
        driver.cache.lru[run_id] = slot
        head: list[AnyEvent] = [created, RunStarted(run_id=run_id, created_at=now)]
        try:
            return await self._run(slot, [], head, fence, None, expect_new=True, sure=True)
        finally:
            driver.cache.trim()

    # -- the shared path ---------------------------------------------------------------------

    async def _run(
        self,
        slot: Slot,
        pending: list[AnyEvent],
        head: Sequence[AnyEvent],
        fence: Fence | None,
        handoff: list[StepJob] | None,
        *,
        expect_new: bool = False,
        sure: bool = False,
    ) -> EventResult | None:
        """Drive the slot through one fused append (serialized with the slot's drives) and
        go on from what it stored; ``None`` when nothing was recorded. ``sure``: fall back
        only on a refusal (the world stored nothing); an error that leaves it unknown
        whether the batch was stored is raised, as the plain append would raise it."""
        driver = self._driver
        slot.driving = True
        try:
            try:
                appended = await self._append(slot, pending, head, fence, expect_new, sure)
            except Exception:
                driver.cache.drop_instance(slot)
                raise
            if appended is None:
                return None
            result, progress = appended
            try:
                await self._go_on(slot, result, progress, len(head), handoff)
                while slot.again:
                    slot.again = False
                    await driver._drive_once(slot, handoff)
                slot.failures = 0
            except (RunOwnedElsewhereError, OwnershipLostError) as exc:
                driver._lost(slot, exc)
            except Exception:
                log.exception("run %s: driving failed", slot.run_id)
                driver._retry_later(slot)  # recorded: the log has it, drive from there
            return result
        finally:
            slot.driving = False
            if slot.again and slot.instance is None:
                # A drive asked for meanwhile (it found this one under way): the log has
                # whatever it was for, and nothing else is going to drive it now.
                slot.again = False
                driver.wake(slot.run_id)
            driver.cache.release(slot)
            if len(driver.cache.lru) > driver.cache.max_cached_runs:
                driver.cache.trim()

    async def _append(
        self,
        slot: Slot,
        pending: list[AnyEvent],
        head: Sequence[AnyEvent],
        fence: Fence | None,
        expect_new: bool,
        sure: bool,
    ) -> tuple[EventResult, Progress] | None:
        """Feed ``pending`` and the stamped ``head``; append ``head`` and the commands it
        produced under ``expected_seq``. ``None``: not fused, nothing stored (the instance
        is dropped)."""
        driver = self._driver
        instance = slot.instance
        assert instance is not None
        expected = pending[-1].seq if pending else instance.last_seq
        replace = msgspec.structs.replace
        if expect_new:
            records = list(head)  # stamped by start() with the time its view was given
            fed = [replace(e, seq=expected + 1 + i) for i, e in enumerate(records)]
        elif len(head) == 1:  # a step's result, a hook's payload
            at = aware(driver.clock.now())
            records = [replace(head[0], created_at=at)]
            fed = [replace(head[0], created_at=at, seq=expected + 1)]
        else:
            at = aware(driver.clock.now())
            records = [replace(e, created_at=at) for e in head]
            fed = [replace(e, seq=expected + 1 + i) for i, e in enumerate(records)]
        try:
            progress = driver._feed(slot, [*pending, *fed])
        except Exception:
            log.exception("run %s: feeding failed; recording the plain way", slot.run_id)
            driver.cache.drop_instance(slot)
            return None
        if progress is None:
            return None  # the instance is gone (feeding failed): the log decides
        if progress.stalled:
            driver.cache.drop_instance(slot)  # recorded the plain way; the rebuild says why
            return None
        commands = driver._with_starts(slot, progress.commands) if progress.commands else []
        try:
            result = await driver.world.append(
                slot.run_id, [*records, *commands], fence=fence, expected_seq=expected
            )
        except BaseException as exc:
            # Someone appended meanwhile (SeqConflictError), the run ended or moved to
            # another engine, a world error: the instance saw an event the log does not
            # have, so it goes; the caller records the plain way.
            unreserve(slot)
            driver.cache.drop_instance(slot)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, SeqConflictError) and expect_new:
                raise  # the id is taken
            if sure and not isinstance(exc, _REFUSED):
                raise  # stored or not, nobody can tell: the caller sees the error
            return None
        return result, progress

    async def _go_on(
        self,
        slot: Slot,
        result: EventResult,
        progress: Progress,
        heads: int,
        handoff: list[StepJob] | None,
    ) -> None:
        """After the fused append: feed back what it stored past the head (the commands, as
        stored) and go on as a drive does."""
        driver = self._driver
        if slot.instance is None:  # evicted meanwhile (engine closing)
            unreserve(slot)
            return
        slot.view = result.run
        if result.run.owner_epoch:
            driver.owner.saw(result.run)
        rest = result.events[heads:]
        if rest and not slot.inbox and not slot.fetch and only_new_steps(rest):
            # As in a drive: new steps wait in the inbox and go in with their results.
            progress = steps_wait(slot, rest, progress)
            slot.conflicts = 0
            await driver._after(slot, progress, handoff)
            return
        if rest:
            slot.inbox.extend(rest)
            fed = driver._feed(slot, await driver._take(slot))
            if fed is None:
                return
            progress = fed
        else:
            progress.commands = []
        await driver._go_on(slot, progress, handoff)
