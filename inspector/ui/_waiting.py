""" "What is this run waiting for?": the open correlations of a run, from its views (pure).

Each open hook (with its token), each sleep (with its wake time), each wait for a named event,
each step that is queued, running, backing off (attempt, next try, last error) or suspended,
each child run still going, and the run's own suspension. A run where nothing is open but that
is not finished is called out, since nothing will make it move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import msgspec

from worldflow.inspector.ui._layout import CHILD_STEP, CHILD_TOKEN_PREFIX, format_ms
from worldflow.worlds import (
    ErrorInfo,
    Hook,
    HookStatus,
    Payload,
    RunStalled,
    RunStatus,
    Step,
    StepStatus,
    Wait,
    WaitStatus,
    WorkflowRun,
)

__all__ = ["Waiting", "waiting_on"]


class Waiting(msgspec.Struct, frozen=True, kw_only=True):
    """One thing the run waits on.

    ``kind`` is ``hook``, ``webhook``, ``sleep``, ``event``, ``step``, ``backoff``,
    ``suspended_step``, ``child``, ``suspended``, ``stalled`` (with the ``recorded`` and
    ``current`` sides of the divergence), ``scheduled`` (a delayed start), ``start`` (pending:
    no engine has started it, or it waits for a flow-control permit) or ``stuck``.
    """

    kind: str
    title: str
    since: datetime | None = None
    until: datetime | None = None
    detail: str = ""
    token: str | None = None
    step_id: str | None = None
    wait_id: str | None = None
    event_name: str | None = None
    child_run_id: str | None = None
    error: ErrorInfo | None = None
    payload: Payload | None = None
    recorded: str = ""
    current: str = ""


def _short(name: str) -> str:
    return name.rpartition(":")[2] or name


def _remaining(until: datetime | None, now: datetime) -> str:
    if until is None:
        return ""
    left = (until - now).total_seconds() * 1000
    return f"in {format_ms(left)}" if left > 0 else f"due {format_ms(-left)} ago"


def waiting_on(
    run: WorkflowRun,
    *,
    hooks: Iterable[Hook],
    waits: Iterable[Wait],
    steps: Iterable[Step],
    now: datetime,
    children: Mapping[str, WorkflowRun] | None = None,
    stall: RunStalled | None = None,
) -> list[Waiting]:
    """The run's open waits, most actionable first; empty for a finished run."""
    if run.status.is_terminal:
        return []
    kids = children or {}
    items: list[Waiting] = []
    if stall is not None and run.status is RunStatus.STALLED:
        items.append(
            Waiting(
                kind="stalled",
                title=f"Stalled: the code no longer replays this run (at event #{stall.position})",
                since=stall.created_at,
                detail=(
                    "No engine drives it until code that replays it is deployed (or Retry "
                    "replay finds it), or it is failed for good."
                ),
                error=stall.error,
                recorded=stall.recorded,
                current=stall.current,
            )
        )
    if run.status is RunStatus.SUSPENDED:
        items.append(
            Waiting(
                kind="suspended",
                title="Run suspended",
                since=run.updated_at,
                detail="Steps already running finish; nothing new is scheduled until resumed.",
            )
        )
    for hook in hooks:
        if hook.status is not HookStatus.ACTIVE:
            continue
        if hook.token.startswith(CHILD_TOKEN_PREFIX):
            child_id = hook.token[len(CHILD_TOKEN_PREFIX) :]
            child = kids.get(child_id)
            status = child.status.value if child is not None else "not started yet"
            name = _short(child.workflow_name) if child is not None else "child"
            items.append(
                Waiting(
                    kind="child",
                    title=f"Child run {name} ({status})",
                    since=hook.created_at,
                    child_run_id=child_id,
                )
            )
            continue
        items.append(
            Waiting(
                kind="webhook" if hook.is_webhook else "hook",
                title=("Webhook " if hook.is_webhook else "Hook ") + hook.token,
                since=hook.created_at,
                token=hook.token,
                detail=f"{hook.received_count} payload(s) received" if hook.received_count else "",
                payload=hook.metadata,
            )
        )
    for wait in waits:
        if wait.status is not WaitStatus.WAITING:
            continue
        if wait.event_name is not None:
            timeout = f"; times out {_remaining(wait.resume_at, now)}" if wait.resume_at else ""
            items.append(
                Waiting(
                    kind="event",
                    title=f"Event {wait.event_name!r}",
                    since=wait.created_at,
                    until=wait.resume_at,
                    wait_id=wait.wait_id,
                    event_name=wait.event_name,
                    detail=f"raise it to continue{timeout}",
                )
            )
        else:
            items.append(
                Waiting(
                    kind="sleep",
                    title="Sleep",
                    since=wait.created_at,
                    until=wait.resume_at,
                    wait_id=wait.wait_id,
                    detail=f"wakes {_remaining(wait.resume_at, now)}",
                )
            )
    for step in steps:
        if step.status.is_terminal or step.step_name == CHILD_STEP:
            continue
        name = _short(step.step_name)
        if step.status is StepStatus.SUSPENDED:
            items.append(
                Waiting(
                    kind="suspended_step",
                    title=f"Step {name} suspended",
                    since=step.updated_at,
                    step_id=step.step_id,
                    detail="waiting for resume_step",
                    payload=step.suspend_payload,
                )
            )
        elif step.retry_after is not None and step.retry_after > now and step.error:
            items.append(
                Waiting(
                    kind="backoff",
                    title=f"Step {name} backing off (attempt {step.attempt} failed)",
                    since=step.updated_at,
                    until=step.retry_after,
                    step_id=step.step_id,
                    error=step.error,
                    detail=f"next attempt {_remaining(step.retry_after, now)}",
                )
            )
        elif step.status is StepStatus.RUNNING:
            items.append(
                Waiting(
                    kind="step",
                    title=f"Step {name} running (attempt {step.attempt})",
                    since=step.started_at or step.created_at,
                    step_id=step.step_id,
                    error=step.error,
                    detail="last attempt failed: see the error" if step.error else "",
                )
            )
        else:
            items.append(
                Waiting(
                    kind="step",
                    title=f"Step {name} queued",
                    since=step.created_at,
                    step_id=step.step_id,
                    error=step.error,
                )
            )
    if run.status is RunStatus.PENDING and run.start_at is not None and run.start_at > now:
        items.append(
            Waiting(
                kind="scheduled",
                title="Delayed start",
                since=run.created_at,
                until=run.start_at,
                detail=(
                    f"Started with a delay: an engine serving its workflow starts it "
                    f"{_remaining(run.start_at, now)}."
                ),
            )
        )
    elif not items and run.status is RunStatus.PENDING:
        items.append(
            Waiting(
                kind="start",
                title="Not started yet",
                since=run.created_at,
                detail=(
                    "No engine serving its workflow has started it, or it waits its turn under "
                    f"the workflow's concurrency or rate limit (priority {run.priority})."
                ),
            )
        )
    if not items and run.status is not RunStatus.STALLED:
        items.append(
            Waiting(
                kind="stuck",
                title="Nothing open",
                since=run.updated_at,
                detail=(
                    "The run is not finished but waits on no step, sleep, hook or event: an "
                    "engine that serves its workflow moves it on its next drive."
                ),
            )
        )
    return items
