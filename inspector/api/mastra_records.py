"""A run's event log told the way Mastra tells a workflow run: statuses, step records, stream
chunks.

Everything here is pure: it reads events and views and returns JSON-ready values, so the same
translation serves ``start-async`` results, ``runById`` and the three stream routes, for any
run (also one started from Python or another API, also after a restart): the stream of a run
is a function of its log, which is why ``observe`` from an offset works without a cache.

A *segment* of a run is what one Mastra start or resume shows: it opens with
``workflow-start`` when the run starts or a suspended step is resumed, and closes with
``workflow-finish`` when the run ends or comes to rest on something outside it (a suspended
step, a hook, a named event). The records of all segments, in order, are the run's Mastra
stream; ``observe?offset=N`` is that list from index ``N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from worldflow import _serde
from worldflow.worlds import (
    AnyEvent,
    ErrorInfo,
    EventRaised,
    HookCreated,
    HookDisposed,
    HookReceived,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStarted,
    RunSuspended,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    WaitCompleted,
    WaitCreated,
)

__all__ = ["RESERVED_TOKEN_PREFIX", "RunTranslator", "error_json", "ms", "short_name"]

RESERVED_TOKEN_PREFIX = "worldflow:"
"""Hooks the engine makes for itself (child outcomes): not something a run waits on outside."""

_ENGINE_STEP_PREFIX = "worldflow."
"""Builtin steps of the engine (``worldflow.start_child``): not the user's steps."""

_USAGE = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}


def ms(when: datetime | None) -> int | None:
    """Epoch milliseconds, as Mastra stamps steps."""
    return None if when is None else int(when.timestamp() * 1000)


def short_name(name: str) -> str:
    """A registered name without its module (``orders.flows:charge`` → ``charge``)."""
    return name.rpartition(":")[2]


def error_json(error: ErrorInfo | None) -> dict[str, Any]:
    """A recorded error as Mastra serializes an ``Error``: ``{message, name}``."""
    if error is None:
        return {"message": "", "name": "Error"}
    out: dict[str, Any] = {"message": error.message, "name": error.name}
    if error.code:
        out["code"] = error.code
    return out


def _decode(raw: Any) -> Any:
    try:
        return _serde.decode(raw)
    except Exception:  # a class this process cannot import: show the value as its JSON
        return msgspec.json.decode(bytes(raw))


@dataclass
class StepRecord:
    """One Mastra step, as the log tells it (the newest call wins for a repeated name)."""

    step_call_id: str
    name: str
    payload: Any = None
    status: str = "pending"
    started_at: int | None = None
    ended_at: int | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    suspend_payload: Any = None
    suspended_at: int | None = None
    resume_payload: Any = None
    resumed_at: int | None = None
    has_output: bool = False
    has_suspend: bool = False
    has_resume: bool = False

    def as_json(self, *, with_payload: bool = True) -> dict[str, Any]:
        """The step as Mastra's ``steps[<id>]`` value."""
        out: dict[str, Any] = {}
        if with_payload:
            out["payload"] = self.payload
        if self.started_at is not None:
            out["startedAt"] = self.started_at
        out["status"] = self.status
        if self.has_suspend:
            out["suspendPayload"] = self.suspend_payload
            if self.suspended_at is not None:
                out["suspendedAt"] = self.suspended_at
        if self.has_resume:
            out["resumePayload"] = self.resume_payload
            if self.resumed_at is not None:
                out["resumedAt"] = self.resumed_at
        if self.has_output:
            out["output"] = self.output
        if self.error is not None:
            out["error"] = self.error
        if self.ended_at is not None:
            out["endedAt"] = self.ended_at
        return out

    def chunk_payload(self) -> dict[str, Any]:
        """The ``payload`` of this step's stream chunks."""
        out = {"stepName": self.name, "id": self.name, "stepCallId": self.step_call_id}
        out.update(self.as_json())
        return out


@dataclass
class RunTranslator:
    """Feed a run's events in ``seq`` order; read its Mastra status, steps and stream records.

    ``records`` grows as events are fed; ``at_rest`` says whether the run has ended or waits
    on something outside it (where ``start-async`` returns and a stream closes).
    """

    run_id: str
    workflow_id: str
    records: list[dict[str, Any]] = field(default_factory=list)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    input: Any = None
    initial_state: Any = None
    status: str = "pending"
    result: Any = None
    error: dict[str, Any] | None = None
    paused: bool = False
    last_seq: int = 0
    _calls: dict[str, StepRecord] = field(default_factory=dict)
    _live_hooks: set[str] = field(default_factory=set)
    _event_waits: set[str] = field(default_factory=set)
    _timers: set[str] = field(default_factory=set)
    _open: bool = False

    # -- reading ------------------------------------------------------------------------

    @property
    def terminal(self) -> bool:
        """Whether the run has finished for good."""
        return self.status in ("success", "failed", "canceled")

    @property
    def suspended_steps(self) -> list[StepRecord]:
        """The calls parked in ``suspend()``, in the order they were made."""
        return [c for c in self._calls.values() if c.status == "suspended"]

    @property
    def busy(self) -> bool:
        """Whether work of the run's own is under way (a step pending or running, a timer)."""
        return bool(self._timers) or any(
            c.status in ("pending", "running") for c in self._calls.values()
        )

    @property
    def waiting_outside(self) -> bool:
        """Whether the run waits on a hook or a named event sent from outside."""
        return bool(self._live_hooks or self._event_waits)

    @property
    def at_rest(self) -> bool:
        """Ended, or resting on something outside: a suspended step, a hook, an event."""
        if self.terminal:
            return True
        if self.status == "pending" or self.busy:
            return False
        return bool(self.suspended_steps) or self.waiting_outside or self.paused

    def mastra_status(self) -> str:
        """The run's status in Mastra's words."""
        if self.terminal or self.status == "pending":
            return self.status
        if self.paused:
            return "paused"
        if self.suspended_steps and not self.busy:
            return "suspended"
        if self.waiting_outside and not self.busy:
            return "waiting"
        return "running"

    def steps_json(self, *, with_input: bool) -> dict[str, Any]:
        """``steps``: each step name's newest call (with ``input`` first for run results)."""
        out: dict[str, Any] = {}
        if with_input:
            out["input"] = self.input
        for name in self.order:
            out[name] = self.steps[name].as_json()
        return out

    def suspended_json(self) -> tuple[list[list[str]], dict[str, Any]]:
        """``suspended`` (paths of step ids) and ``suspendPayload`` keyed by step id."""
        paths: list[list[str]] = []
        payloads: dict[str, Any] = {}
        for call in self.suspended_steps:
            if [call.name] not in paths:
                paths.append([call.name])
            payloads[call.name] = call.suspend_payload
        return paths, payloads

    def execution_path(self) -> list[str]:
        """Step ids in the order the run first called them."""
        return list(self.order)

    # -- feeding ------------------------------------------------------------------------

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.records.append(
            {"type": kind, "runId": self.run_id, "from": "WORKFLOW", "payload": payload}
        )

    def _open_segment(self) -> None:
        if not self._open:
            self._open = True
            self._emit("workflow-start", {"workflowId": self.workflow_id})

    def _close_segment(self) -> None:
        if not self._open:
            return
        self._open = False
        payload: dict[str, Any] = {
            "workflowStatus": self.mastra_status(),
            "metadata": {},
            "output": {"usage": dict(_USAGE)},
        }
        if self.status == "success":
            payload["finalWorkflowResult"] = self.result
        if self.status == "failed":
            payload["error"] = self.error
        self._emit("workflow-finish", payload)

    def feed(self, events: list[AnyEvent]) -> None:
        """Take the next events of the log (in order; events already fed are skipped)."""
        for event in events:
            if event.seq and event.seq <= self.last_seq:
                continue
            self.last_seq = event.seq or self.last_seq + 1
            self._one(event)
        if self._open and self.at_rest:
            self._close_segment()

    def _one(self, event: AnyEvent) -> None:
        when = ms(event.created_at)
        if isinstance(event, StepResumed | RunResumed) and self._open and self.at_rest:
            self._close_segment()  # the rest before this resume ended the previous segment
        if isinstance(event, RunCreated):
            self.input = _decode(event.input)
            self.initial_state = _decode(event.initial_state)
        elif isinstance(event, RunStarted):
            if self.status == "pending":
                self.status = "running"
            self._open_segment()
        elif isinstance(event, StepCreated):
            self._step_created(event)
        elif isinstance(event, StepStarted):
            call = self._calls.get(event.correlation_id)
            if call is not None:
                self._open_segment()
                call.status = "running"
                if call.started_at is None:
                    call.started_at = when
                self._emit("workflow-step-start", call.chunk_payload())
        elif isinstance(event, StepCompleted):
            call = self._calls.get(event.correlation_id)
            if call is not None:
                call.status, call.output, call.has_output = "success", _decode(event.result), True
                call.ended_at = when
                self._emit("workflow-step-result", call.chunk_payload())
        elif isinstance(event, StepFailed):
            call = self._calls.get(event.correlation_id)
            if call is not None:
                call.status, call.error, call.ended_at = "failed", error_json(event.error), when
                self._emit("workflow-step-result", call.chunk_payload())
        elif isinstance(event, StepRetrying):
            call = self._calls.get(event.correlation_id)
            if call is not None:
                call.status = "pending"
        elif isinstance(event, StepSuspended):
            call = self._calls.get(event.correlation_id)
            if call is not None:
                call.status, call.suspended_at = "suspended", when
                call.suspend_payload, call.has_suspend = _decode(event.payload), True
                self._emit("workflow-step-suspended", call.chunk_payload())
        elif isinstance(event, StepResumed):
            call = self._calls.get(event.correlation_id)
            if call is not None:
                self._open_segment()
                call.status, call.resumed_at = "pending", when
                call.resume_payload, call.has_resume = _decode(event.data), True
        else:
            self._other(event, when)

    def _step_created(self, event: StepCreated) -> None:
        if event.step_name.startswith(_ENGINE_STEP_PREFIX):
            return  # the engine's own steps (starting a child run) are not the user's steps
        name = short_name(event.step_name)
        call = StepRecord(step_call_id=event.correlation_id, name=name)
        decoded = _decode(event.input)
        call.payload = decoded
        self._calls[event.correlation_id] = call
        if name not in self.steps:
            self.order.append(name)
        self.steps[name] = call

    def _other(self, event: AnyEvent, when: int | None) -> None:
        if isinstance(event, HookCreated):
            if not event.token.startswith(RESERVED_TOKEN_PREFIX):
                self._live_hooks.add(event.correlation_id or "")
                self._open_segment()
                self._emit(
                    "workflow-step-waiting",
                    {"id": event.token, "payload": None, "startedAt": when, "status": "waiting"},
                )
        elif isinstance(event, HookReceived | HookDisposed):
            self._live_hooks.discard(event.correlation_id or "")
        elif isinstance(event, WaitCreated):
            cid = event.correlation_id or ""
            if event.event_name is not None:
                self._event_waits.add(cid)
                self._emit(
                    "workflow-step-waiting",
                    {
                        "id": event.event_name,
                        "payload": None,
                        "startedAt": when,
                        "status": "waiting",
                    },
                )
            else:
                self._timers.add(cid)
        elif isinstance(event, WaitCompleted):
            cid = event.correlation_id or ""
            self._event_waits.discard(cid)
            self._timers.discard(cid)
        elif isinstance(event, EventRaised):
            pass  # delivered through a wait_completed of the wait that takes it
        elif isinstance(event, RunSuspended):
            self.paused = True
            self._emit("workflow-paused", {})
        elif isinstance(event, RunResumed):
            self.paused = False
            self._open_segment()
        elif isinstance(event, RunCompleted):
            self.status, self.result = "success", _decode(event.output)
            self._finish()
        elif isinstance(event, RunFailed):
            self.status, self.error = "failed", error_json(event.error)
            self._finish()
        elif isinstance(event, RunCancelled) and not self.terminal:
            self.status = "canceled"
            self._open_segment()
            self._emit("workflow-canceled", {})
            self._finish()

    def _finish(self) -> None:
        self._live_hooks.clear()
        self._event_waits.clear()
        self._timers.clear()
        self._open_segment()
        self._close_segment()
