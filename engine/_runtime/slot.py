"""A run's working state in the driver: its instance, its in-flight work, what it appended.

Everything here is a cache of the log, rebuilt by feeding the log again after an eviction or a
restart.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from worldflow._limits import PermitAsk
from worldflow._replay.instance import WorkflowInstance, WorkflowMetadata
from worldflow._runtime.step_job import Limiter, StepJob
from worldflow.worlds import AnyEvent, StepWoken, WorkflowRun

__all__ = ["Slot", "aware"]


def aware(when: datetime) -> datetime:
    """``when``, as UTC if it came without a time zone (stored times are UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Slot:
    """The engine's working state for one run (a cache of its log, plus in-flight work)."""

    __slots__ = (
        "again",
        "conflicts",
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
        self.tracked = 0  # seq of the last event track() looked at
        self.view: WorkflowRun | None = None  # the run view our last append returned
        self.reserved: dict[str, list[Limiter]] = {}  # step id -> limits held for it
        self.meta: WorkflowMetadata | None = None  # the instance's, kept for step jobs
        self.stalled_with: str | None = None  # the recorded divergence, if it was stalled

    def idle(self) -> bool:
        """Nothing keeps this slot: no instance, no step, no timer, no drive."""
        return self.instance is None and not self.jobs and self.timer is None and not self.driving

    def metadata(self) -> WorkflowMetadata:
        """The run's metadata for step contexts: the instance's, made once per instance."""
        meta = self.meta
        if meta is None:
            instance = self.instance
            assert instance is not None
            meta = self.meta = instance.metadata()
        return meta

    def track(self, events: list[AnyEvent]) -> None:
        """Hurry the step jobs that ``events`` (each looked at once, in seq order) wake
        early. What the log says about the run (its steps' attempts, backoff and resume
        data, the children it waits for, its end) is the instance's to say
        (:meth:`WorkflowInstance.step_call`, :meth:`WorkflowInstance.children_waiting`)."""
        if not events:
            return
        tracked, last = self.tracked, events[-1].seq
        if last <= tracked:
            return  # seen already (tracked when appended, before it was fed)
        self.tracked = last
        jobs = self.jobs
        if jobs:
            for event in events:
                if event.seq > tracked and type(event) is StepWoken:
                    job = jobs.get(event.correlation_id or "")
                    if job is not None:
                        job.hurry()
