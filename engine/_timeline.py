"""A run's timeline: its event log told as steps, waits, hooks and events with their times.

Used by the demo, the CLI (``worldflow show``) and anything else that wants to show a person
what a run did.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from worldflow.worlds import (
    AnyEvent,
    EventRaised,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    PatchMarked,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStalled,
    RunStarted,
    RunSuspended,
    RunUnstalled,
    StateUpdated,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepInterrupted,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    StepWoken,
    WaitCompleted,
    WaitCreated,
    WaitWoken,
)

__all__ = ["TimelineEntry", "build_timeline", "format_timeline"]


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a timeline: when (absolute, and ms since the run was created) and what."""

    seq: int
    at: datetime
    offset_ms: int
    kind: str  # "run", "step", "wait", "hook", "event", "state" or "patch"
    text: str


def _short(name: str) -> str:
    return name.rpartition(":")[2] or name


def build_timeline(events: Iterable[AnyEvent]) -> list[TimelineEntry]:
    """Turn a run's events (in ``seq`` order) into timeline entries, one per event.

    Later lines about a step, hook or wait name it by what its ``*_created`` event said
    (step name, token, event name) rather than by correlation id.
    """
    entries: list[TimelineEntry] = []
    start: datetime | None = None
    steps: dict[str, str] = {}
    hooks: dict[str, str] = {}
    waits: dict[str, str] = {}
    running: set[str] = set()  # steps with an attempt started and no outcome yet

    for event in events:
        if start is None:
            start = event.created_at
        corr = event.correlation_id or ""
        step = steps.get(corr, corr)
        kind, text = "run", ""
        if isinstance(event, StepCompleted | StepFailed | StepRetrying | StepSuspended):
            running.discard(corr)  # the attempt has its outcome
        match event:
            case RunCreated(workflow_name=name):
                text = f"run created ({_short(name)})"
            case RunStarted():
                text = "run started"
            case RunCompleted():
                text = "run completed"
            case RunFailed(error=error):
                text = f"run failed: {error.name}: {error.message}"
            case RunCancelled(reason=reason):
                text = "run cancelled" + (f": {reason}" if reason else "")
            case RunSuspended(reason=reason):
                text = "run suspended" + (f": {reason}" if reason else "")
            case RunResumed():
                text = "run resumed"
            case RunStalled(recorded=recorded, current=current):
                text = f"run STALLED: the code does {current}, the log recorded {recorded}"
            case RunUnstalled():
                text = "run unstalled: the code deployed replays it"
            case StepCreated(step_name=name):
                steps[corr] = _short(name)
                kind, text = "step", f"step {steps[corr]} scheduled"
            case StepStarted():
                lost = corr in running
                running.add(corr)
                kind, text = "step", f"step {step}: attempt started"
                if lost:
                    text += " (the previous attempt was lost: its process died; not counted)"
            case StepInterrupted():
                running.discard(corr)
                kind = "step"
                text = f"step {step}: attempt interrupted (the engine stopped; not counted)"
            case StepCompleted():
                kind, text = "step", f"step {step}: done"
            case StepRetrying(error=error):
                kind, text = "step", f"step {step}: {error.name}: {error.message} -> retry"
            case StepFailed(error=error):
                kind, text = "step", f"step {step}: FAILED: {error.name}: {error.message}"
            case StepSuspended():
                kind, text = "step", f"step {step}: suspended, waiting for resume_step"
            case StepResumed():
                kind, text = "step", f"step {step}: resumed"
            case StepWoken(actor=actor):
                kind, text = "step", f"step {step}: retry now, asked by {actor or 'someone'}"
            case WaitCreated(event_name=str() as name, resume_at=resume_at):
                waits[corr] = f"event {name!r}"
                until = f" (timeout at +{_offset(start, resume_at)} ms)" if resume_at else ""
                kind, text = "wait", f"waiting for event {name!r}{until}"
            case WaitCreated(resume_at=resume_at):
                waits[corr] = "sleep"
                kind, text = "wait", f"durable sleep until +{_offset(start, resume_at)} ms"
            case WaitWoken(actor=actor):
                kind, text = "wait", f"{waits.get(corr, 'wait')} woken by {actor or 'someone'}"
            case WaitCompleted():
                kind, text = "wait", f"{waits.get(corr, 'wait')} over"
            case HookCreated(token=token, is_webhook=is_webhook):
                hooks[corr] = token
                label = "webhook" if is_webhook else "hook"
                kind, text = "hook", f"{label} {token!r} waiting"
            case HookConflict(token=token):
                kind, text = "hook", f"hook token {token!r} already taken"
            case HookReceived():
                kind, text = "hook", f"hook {hooks.get(corr, corr)!r} received a payload"
            case HookDisposed():
                kind, text = "hook", f"hook {hooks.get(corr, corr)!r} disposed"
            case EventRaised(name=name):
                kind, text = "event", f"event {name!r} raised"
            case StateUpdated():
                kind, text = "state", "state updated"
            case PatchMarked(name=name):
                kind, text = "patch", f"patched({name!r}): the new code"
        actor = getattr(event, "actor", None)
        if actor and not isinstance(event, (WaitWoken, StepWoken)):
            text = f"{text} (by {actor})"  # who asked: cancel, suspend, resume, hook, event...
        entries.append(
            TimelineEntry(
                seq=event.seq,
                at=event.created_at,
                offset_ms=_offset(start, event.created_at),
                kind=kind,
                text=text,
            )
        )
    return entries


def _offset(start: datetime | None, when: datetime | None) -> int:
    if start is None or when is None:
        return 0
    return round((when - start).total_seconds() * 1000)


def format_timeline(entries: Iterable[TimelineEntry], *, indent: str = "  ") -> str:
    """Render entries as aligned text lines: ``   151 ms  step charge: attempt started``."""
    return "\n".join(f"{indent}{e.offset_ms:>7} ms  {e.text}" for e in entries)
