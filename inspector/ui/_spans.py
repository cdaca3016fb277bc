"""Collecting a run's log into spans: one per step, wait, hook and child run (pure).

Times are milliseconds since the run's first event. :mod:`._layout` turns the spans into
rows on a (compressed) time scale.
"""

from __future__ import annotations

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
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    StepWoken,
    WaitCompleted,
    WaitCreated,
    WaitWoken,
)

__all__ = ["CHILD_STEP", "CHILD_TOKEN_PREFIX", "format_ms"]

CHILD_STEP = "worldflow.start_child"
"""The builtin step that starts a child run (``worldflow._replay.child_contract``)."""
CHILD_TOKEN_PREFIX = "worldflow:child:"
"""The parent's hook that receives a child's outcome has this token prefix."""


def format_ms(ms: float) -> str:
    """A duration for people: ``120 ms``, ``2.4 s``, ``3 min``, ``5.5 h``, ``3 d``."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s".replace(".0 s", " s")
    if s < 3600:
        return f"{s / 60:.1f} min".replace(".0 min", " min")
    if s < 86400:
        return f"{s / 3600:.1f} h".replace(".0 h", " h")
    return f"{s / 86400:.1f} d".replace(".0 d", " d")


def _short(name: str) -> str:
    return name.rpartition(":")[2] or name


# -- collecting spans from the log -----------------------------------------------------------


class Span:
    """A mutable row being collected: its times in ms since the run's first event."""

    __slots__ = (
        "attempts",
        "child_run_id",
        "detail",
        "end",
        "events",
        "key",
        "kind",
        "label",
        "name",
        "open_from",
        "open_kind",
        "pieces",
        "planned",
        "seq",
        "start",
        "status",
    )

    def __init__(self, key: str, kind: str, label: str, start: float, seq: int) -> None:
        self.key = key
        self.kind = kind
        self.label = label
        self.name = label
        self.start = start
        self.end: float | None = None
        self.seq = seq
        self.status = "pending"
        self.attempts = 0
        self.pieces: list[tuple[str, float, float, str]] = []
        self.events: list[tuple[str, float, str, int]] = []
        self.open_kind = "queued"
        self.open_from = start
        self.planned: float | None = None
        self.child_run_id: str | None = None
        self.detail = ""

    def close(self, at: float, kind: str, title: str) -> None:
        self.pieces.append((kind, self.open_from, at, title))
        self.open_from = at

    def switch(self, at: float, kind: str, title: str, next_kind: str) -> None:
        self.close(at, kind, title)
        self.open_kind = next_kind


class Collector:
    def __init__(self) -> None:
        self.t0: datetime | None = None
        self.spans: dict[str, Span] = {}
        self.order: list[Span] = []
        self.run_marks: list[tuple[str, float, str, int]] = []
        self.suspended: list[tuple[float, float | None]] = []
        self.active: list[tuple[float, float]] = []  # stretches where work ran
        self.instants: list[float] = []
        self.run_status = "pending"
        self.run_end: float | None = None
        self.last = 0.0

    def ms(self, when: datetime) -> float:
        if self.t0 is None:
            self.t0 = when
        return (when - self.t0).total_seconds() * 1000.0

    def new(self, key: str, kind: str, label: str, at: float, seq: int) -> Span:
        span = Span(key, kind, label, at, seq)
        self.spans[key] = span
        self.order.append(span)
        return span

    def feed(self, event: AnyEvent) -> None:
        at = self.ms(event.created_at)
        if at > self.last:
            self.last = at
        self.instants.append(at)
        corr = event.correlation_id or ""
        span = self.spans.get(corr)
        seq = event.seq
        # most of a log is step events: they are matched first (this runs once per event)
        match event:
            case StepCreated(step_name=name, input=payload):
                if name == CHILD_STEP:
                    child = child_target(payload)
                    label = f"child {_short(child[0])}" if child else "child run"
                    span = self.new(corr, "child", label, at, seq)
                    span.child_run_id = child[1] if child else None
                    span.open_kind = "waiting"
                else:
                    self.new(corr, "step", _short(name), at, seq)
            case StepStarted() if span is not None:
                if span.kind == "child":
                    return
                span.attempts += 1
                span.status = "running"
                queued = "backoff" if span.open_kind == "backoff" else span.open_kind
                span.switch(at, queued, _title(queued, span, at), "running")
            case StepRetrying(error=error) if span is not None:
                if span.kind == "child":
                    return
                title = f"attempt {span.attempts} failed: {error.name}: {error.message}"
                self.active.append((span.open_from, at))
                span.switch(at, "retry", title, "backoff")
                span.status = "retrying"
                span.detail = f"{error.name}: {error.message}"
            case StepCompleted() if span is not None:
                if span.kind == "child":
                    span.status = "started"
                    return
                self.active.append((span.open_from, at))
                span.close(at, "ok", f"attempt {span.attempts} completed")
                span.status, span.end = "completed", at
            case StepFailed(error=error) if span is not None:
                if span.kind == "child":
                    span.status = "failed"
                    span.close(at, "failed", f"could not start: {error.name}: {error.message}")
                    span.end = at
                    return
                self.active.append((span.open_from, at))
                span.close(at, "failed", f"attempt {span.attempts} failed for good")
                span.status, span.end = "failed", at
                span.detail = f"{error.name}: {error.message}"
            case StepSuspended() if span is not None:
                self.active.append((span.open_from, at))
                span.switch(at, "ok", f"attempt {span.attempts} suspended itself", "suspended")
                span.status = "suspended"
            case StepResumed() if span is not None:
                span.switch(at, "suspended", "suspended until resume_step", "queued")
                span.status = "pending"
            case WaitCreated(resume_at=resume_at, event_name=name):
                if name is not None:
                    span = self.new(corr, "event", f"event {name!r}", at, seq)
                else:
                    span = self.new(corr, "sleep", "sleep", at, seq)
                span.status = "waiting"
                span.open_kind = "waiting"
                if resume_at is not None:
                    span.planned = self.ms(resume_at)
            case WaitWoken(actor=actor) if span is not None:
                span.events.append(("woken", at, f"woken now by {actor or 'someone'}", seq))
            case StepWoken(actor=actor) if span is not None:
                span.events.append(("woken", at, f"retry now, asked by {actor or 'someone'}", seq))
            case WaitCompleted() if span is not None:
                span.close(at, "waiting", f"{span.label}: waited {format_ms(at - span.start)}")
                span.status, span.end = "completed", at
            case HookCreated(token=token, is_webhook=webhook):
                if token.startswith(CHILD_TOKEN_PREFIX):
                    child_id = token[len(CHILD_TOKEN_PREFIX) :]
                    self.spans[corr] = self._child_for(child_id)
                    return
                span = self.new(
                    corr, "hook", f"{'webhook' if webhook else 'hook'} {token}", at, seq
                )
                span.status = "waiting"
                span.open_kind = "waiting"
            case HookReceived() if span is not None:
                if span.kind == "child":
                    span.close(at, "waiting", f"{span.label}: ran {format_ms(at - span.start)}")
                    span.status, span.end = "done", at
                    return
                what = _by("payload received", getattr(event, "actor", None))
                span.events.append(("received", at, what, seq))
                span.status = "received"
            case HookDisposed() if span is not None:
                if span.kind == "child" or span.end is not None:
                    return
                span.close(at, "waiting", f"{span.label}: open {format_ms(at - span.start)}")
                span.end = at
                span.status = "received" if span.events else "disposed"
            case RunCreated():
                self.run_marks.append(("created", at, "run created", seq))
            case RunStarted():
                if self.run_status == "pending":
                    self.run_status = "running"
            case RunSuspended(reason=reason, actor=actor):
                self.run_status = "suspended"
                self.suspended.append((at, None))
                what = _by(_why("run suspended", reason), actor)
                self.run_marks.append(("suspended", at, what, seq))
            case RunResumed(actor=actor):
                self.run_status = "running"
                if self.suspended and self.suspended[-1][1] is None:
                    self.suspended[-1] = (self.suspended[-1][0], at)
                self.run_marks.append(("resumed", at, _by("run resumed", actor), seq))
            case RunCompleted():
                self._end_run(at, "completed", "run completed", seq)
            case RunFailed(error=error):
                self._end_run(at, "failed", f"run failed: {error.name}: {error.message}", seq)
            case RunCancelled(reason=reason, actor=actor):
                self._end_run(at, "cancelled", _by(_why("run cancelled", reason), actor), seq)
            case RunStalled(position=position):
                self.run_status = "stalled"
                self.run_marks.append(("stalled", at, f"stalled: diverged at #{position}", seq))
            case RunUnstalled():
                self.run_status = "running"
                self.run_marks.append(("resumed", at, "unstalled: the code replays it", seq))
            case HookConflict(token=token):
                self.run_marks.append(("conflict", at, f"hook token {token!r} taken", seq))
            case EventRaised(name=name, actor=actor):
                self.run_marks.append(("event", at, _by(f"event {name!r} raised", actor), seq))
            case StateUpdated():
                self.run_marks.append(("state", at, "state updated", seq))
            case PatchMarked(name=name):
                # a versioning mark: from here the run takes the new branch of patched(name)
                title = f"patched({name!r}): the new code from here on"
                self.run_marks.append(("patch", at, title, seq))
            case _:
                pass  # a result for an unknown correlation id: shown in the event log only

    def _child_for(self, child_id: str) -> Span:
        for span in reversed(self.order):
            if span.kind == "child" and span.child_run_id == child_id:
                return span
        return Span(child_id, "child", "child run", 0.0, 0)  # detached: never drawn

    def _end_run(self, at: float, status: str, title: str, seq: int) -> None:
        self.run_status = status
        self.run_end = at
        if self.suspended and self.suspended[-1][1] is None:
            self.suspended[-1] = (self.suspended[-1][0], at)
        self.run_marks.append((status, at, title, seq))


def _why(text: str, reason: str | None) -> str:
    return f"{text}: {reason}" if reason else text


def _by(text: str, actor: str | None) -> str:
    """The text with who asked for it, when the event records it."""
    return f"{text} (by {actor})" if actor else text


def _title(kind: str, span: Span, at: float) -> str:
    took = format_ms(at - span.open_from)
    if kind == "backoff":
        return f"backoff {took} before attempt {span.attempts}"
    if kind == "queued":
        return f"queued {took}"
    return f"{kind} {took}"


def child_target(payload: msgspec.Raw) -> tuple[str, str] | None:
    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    if isinstance(value, dict):
        name, run_id = value.get("workflow_name"), value.get("run_id")
        if isinstance(name, str) and isinstance(run_id, str):
            return name, run_id
    return None
