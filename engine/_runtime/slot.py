"""A run's working state in the driver: what its log says, and its in-flight work.

Everything here is a cache of the log, rebuilt by feeding the log again after an eviction or a
restart.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from worldflow._limits import PermitAsk
from worldflow._replay.child_contract import CHILD_TOKEN_PREFIX
from worldflow._replay.instance import WorkflowInstance, WorkflowMetadata
from worldflow._runtime.step_runner import Limiter, StepJob
from worldflow.worlds import (
    NULL,
    AnyEvent,
    ChildEnded,
    HookCreated,
    HookDisposed,
    HookReceived,
    Payload,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    StepWoken,
    WorkflowRun,
)

__all__ = ["Slot", "aware"]

_TERMINAL = (RunCompleted, RunFailed, RunCancelled)


def aware(when: datetime) -> datetime:
    """``when``, as UTC if it came without a time zone (stored times are UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class _StepTrack:
    """What the log says about one unfinished step call (built from the fed events)."""

    __slots__ = ("attempt", "input", "name", "resume_data", "retry_after", "suspended")

    def __init__(self, name: str, input: Payload) -> None:
        self.name = name
        self.input = input
        self.attempt = 0
        self.retry_after: datetime | None = None
        self.suspended = False
        self.resume_data: Payload = NULL


class Slot:
    """The engine's working state for one run (a cache of its log, plus in-flight work)."""

    __slots__ = (
        "again",
        "child_hooks",
        "conflicts",
        "created",
        "driving",
        "failures",
        "fetch",
        "inbox",
        "instance",
        "jobs",
        "meta",
        "permits",
        "reserved",
        "run_id",
        "run_view",
        "stalled_with",
        "started_at",
        "steps",
        "terminal",
        "timer",
        "timer_at",
        "tracked",
        "unstall",
        "view",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.instance: WorkflowInstance | None = None
        self.run_view: WorkflowRun | None = None  # set by start: saves a read on first drive
        self.inbox: list[AnyEvent] = []
        self.driving = False
        self.again = False
        self.fetch = False
        self.conflicts = 0
        self.failures = 0
        self.jobs: dict[str, StepJob] = {}
        self.timer: asyncio.Task[Any] | None = None
        self.timer_at: datetime | None = None
        self.unstall = False  # the next rebuild replays the run even if it is stalled
        self.permits: list[PermitAsk] | None = None  # concurrency permits the run holds
        self.reset()

    def reset(self) -> None:
        """Forget what was learned from the log (the instance is gone)."""
        self.tracked = 0  # seq of the last event _track looked at
        self.view: WorkflowRun | None = None  # the run view our last append returned
        self.reserved: dict[str, list[Limiter]] = {}  # step id -> limits held for it
        self.steps: dict[str, _StepTrack] = {}
        self.child_hooks: dict[str, str] = {}  # hook id -> child run id, still waiting
        self.created: RunCreated | None = None
        self.started_at: datetime | None = None
        self.meta: WorkflowMetadata | None = None
        self.terminal = False
        self.stalled_with: str | None = None  # the recorded divergence, if it was stalled

    def idle(self) -> bool:
        """Nothing keeps this slot: no instance, no step, no timer, no drive."""
        return self.instance is None and not self.jobs and self.timer is None and not self.driving

    def track(self, events: list[AnyEvent]) -> None:
        """Learn from ``events`` (each once, in seq order) what the steps and hooks are doing."""
        if not events or events[-1].seq <= self.tracked:
            return  # seen already (tracked when appended, before it was fed)
        steps = self.steps
        for event in events:
            if event.seq <= self.tracked:
                continue
            self.tracked = event.seq
            kind = type(event)
            if kind is StepCreated:
                assert isinstance(event, StepCreated)
                steps[event.correlation_id] = _StepTrack(event.step_name, event.input)
            elif kind is StepStarted:
                track = steps.get(event.correlation_id or "")
                if track is not None:
                    track.attempt += 1
            elif kind is StepCompleted or kind is StepFailed:
                steps.pop(event.correlation_id or "", None)
            elif kind is StepRetrying:
                assert isinstance(event, StepRetrying)
                track = steps.get(event.correlation_id)
                if track is not None:
                    track.retry_after = event.retry_after
            elif kind is StepSuspended:
                track = steps.get(event.correlation_id or "")
                if track is not None:
                    track.suspended = True
            elif kind is StepResumed:
                assert isinstance(event, StepResumed)
                track = steps.get(event.correlation_id)
                if track is not None:
                    track.suspended = False
                    track.resume_data = event.data
            elif kind is StepWoken:
                track = steps.get(event.correlation_id or "")
                if track is not None:
                    track.retry_after = None
                job = self.jobs.get(event.correlation_id or "")
                if job is not None:
                    job.hurry()
            elif kind is HookCreated:
                assert isinstance(event, HookCreated)
                if event.token.startswith(CHILD_TOKEN_PREFIX):
                    self.child_hooks[event.correlation_id] = event.token[len(CHILD_TOKEN_PREFIX) :]
            elif kind is HookReceived or kind is HookDisposed or kind is ChildEnded:
                self.child_hooks.pop(event.correlation_id or "", None)
            elif kind is RunCreated:
                assert isinstance(event, RunCreated)
                self.created = event
            elif kind is RunStarted:
                if self.started_at is None:
                    self.started_at = aware(event.created_at)
            elif kind in _TERMINAL:
                self.terminal = True

    def metadata(self) -> WorkflowMetadata:
        """The run's metadata for step contexts (from its ``run_created``)."""
        meta = self.meta
        if meta is None:
            created = self.created
            assert created is not None
            meta = self.meta = WorkflowMetadata(
                workflow_name=created.workflow_name,
                run_id=self.run_id,
                created_at=aware(created.created_at),
                started_at=self.started_at,
                resource_id=created.resource_id,
                metadata=dict(created.metadata),
                parent_run_id=created.parent_run_id,
                priority=created.priority,
            )
        return meta
