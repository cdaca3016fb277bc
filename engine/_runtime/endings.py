"""What happens when a run stops being driven here: when it ends, its slot is cleared, its
permits given back, and once per run its streams are closed, its parent told
(``child_ended``) and, if it was cancelled, its children cancelled; when its log does not
replay against this code, ``run_stalled`` is recorded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from worldflow._registry import Registry
from worldflow._replay.child_contract import CHILD_TOKEN_PREFIX, child_hook_token, child_outcome
from worldflow._runtime.flow import FlowGate
from worldflow._runtime.handoff import enqueue_run
from worldflow._runtime.ownership import RunOwner
from worldflow._runtime.run_cache import RunCache
from worldflow._runtime.slot import Slot
from worldflow._runtime.timers import RunTimers, Spawn
from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    NondeterminismError,
    RunNotFoundError,
    RunTerminalError,
)
from worldflow.worlds import (
    AnyEvent,
    ChildEnded,
    ErrorInfo,
    RunCancelled,
    RunStalled,
    RunStatus,
    WorkflowRun,
    World,
)

__all__ = ["RunEndings"]

log = logging.getLogger("worldflow.engine")

_FINALIZED_MEMORY = 10_000


class RunEndings:
    """Wraps up the runs that end (or stall) here, and tells parents and children.

    Args:
        world: The world.
        registry: The engine's workflows (a run is driven here only if it has its workflow).
        owner: The engine's fences.
        flow: The flow-control gate (permits to give back).
        spawn: Starts an engine-owned task.
        cache: The driver's slots and instances.
        timers: The runs' timers.
        wake: Drives a run soon, in its own task.
        deliver: Hands a run's stored events to its cached instance.
        cancel_jobs: Cancels a run's steps executing in this process.
    """

    def __init__(
        self,
        *,
        world: World,
        registry: Registry,
        owner: RunOwner,
        flow: FlowGate,
        spawn: Spawn,
        cache: RunCache,
        timers: RunTimers,
        wake: Callable[[str], None],
        deliver: Callable[[str, list[AnyEvent]], None],
        cancel_jobs: Callable[[str], int],
    ) -> None:
        self.world = world
        self.registry = registry
        self.owner = owner
        self.flow = flow
        self._spawn = spawn
        self._cache = cache
        self._timers = timers
        self._wake = wake
        self._deliver = deliver
        self._cancel_jobs = cancel_jobs
        self.finalized: OrderedDict[str, None] = OrderedDict()
        """Runs wrapped up already (the most recent ones)."""

    async def finished(self, slot: Slot, run: WorkflowRun | None) -> None:
        """The run ended (``run``: its view, if known): clear its slot and wrap it up once."""
        self._timers.disarm(slot)
        self._cache.drop_instance(slot)
        slot.inbox.clear()
        self.owner.forget(slot.run_id)
        permits, slot.permits = slot.permits, None
        if permits:
            await self.flow.release(permits)  # the world voids them anyway: this is prompt
        if run is not None and run.status is RunStatus.CANCELLED:
            self._cancel_jobs(slot.run_id)  # cancelled by someone else: its steps stop here
        if slot.run_id in self.finalized:
            return
        self.finalized[slot.run_id] = None
        if len(self.finalized) > _FINALIZED_MEMORY:
            self.finalized.popitem(last=False)
        # In this drive rather than in a task of its own: a task per finished run cost more
        # than the wrap-up, which for most runs is one read that finds nothing to close.
        try:
            await self._wrap_up(slot.run_id, run)
        except Exception:
            log.exception("run %s: wrapping up the finished run failed", slot.run_id)

    async def stalled(self, slot: Slot) -> None:
        """The log did not replay against this code: record ``run_stalled`` (once per
        divergence) and stop driving the run; steps already running finish and record."""
        instance = slot.instance
        assert instance is not None
        error = instance.error
        assert isinstance(error, NondeterminismError)
        before = slot.stalled_with
        self._timers.disarm(slot)
        self._cache.drop_instance(slot)
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

    async def notify_parent(self, child: WorkflowRun) -> bool:
        """Tell the parent its child ended: ``child_ended`` on its ``worldflow:child:`` hook.
        Returns whether this call told it (``False``: told already, or nobody waits)."""
        parent_id = child.parent_run_id
        if parent_id is None:
            return False
        try:
            hook = await self.world.get_hook_by_token(child_hook_token(child.run_id))
            if hook.received_count or hook.run_id != parent_id:
                return False
            ended = ChildEnded(
                run_id=parent_id,
                correlation_id=hook.hook_id,
                child_run_id=child.run_id,
                outcome=child_outcome(child),
            )
            result = await self.world.append(parent_id, [ended])
        except (HookNotFoundError, RunNotFoundError, EntityConflictError):
            return False  # the parent is gone or has stopped waiting
        self._deliver(parent_id, result.events)
        self.wake_or_enqueue(result.run)
        return True

    def wake_or_enqueue(self, run: WorkflowRun) -> None:
        """Drive ``run`` here if this engine has its workflow and nobody else owns it, else
        queue it for its owner (or any engine serving it)."""
        if self.registry.has_workflow(run.workflow_name) and self.owner.drives(run):
            self._wake(run.run_id)
        else:
            self._spawn(enqueue_run(self.world, run), f"enqueue {run.run_id}")

    async def check_children(self, parent_id: str, children: dict[str, str]) -> int:
        """Tell the parent of each of ``children`` (hook id -> child run id) that ended
        while nobody could (a crash); returns how many it told."""
        told = 0
        for child_id in children.values():
            try:
                child = await self.world.get_run(child_id)
            except RunNotFoundError:
                continue  # not started yet: the start_child step will start it
            if child.status.is_terminal and await self.notify_parent(child):
                told += 1
        return told

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
                self._cancel_jobs(child_id)
            self._deliver(child_id, result.events)
            self.wake_or_enqueue(result.run)
