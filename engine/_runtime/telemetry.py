"""Traces and counters, made from the events an engine appends.

Everything a run does reaches the world through ``append``, so one observer of the appends
sees it all, on every world, without a hook in the driver or the step runner:

* **Spans** (OpenTelemetry, when ``opentelemetry-api`` is installed): a ``start <workflow>``
  span where a run is started (a child of the caller's current span), and, as children of it,
  one ``step <name>`` span per step attempt (attempt number, retry error, run and step ids) and
  a ``run <workflow>`` span from the run's creation to its end. Spans are emitted when their
  end is recorded, with the recorded times, so a run that sleeps for a day, moves to another
  engine or is replayed after a crash still yields one span per attempt and no duplicates
  from replays. The start span's context travels in ``run_created.trace_context`` (W3C
  ``traceparent``), into child workflows too, so a run is one trace across processes.
* **Counters**: runs started / completed / failed / cancelled per workflow, step attempts,
  retries and failures per step, in the Prometheus text format (:meth:`Metrics.render`),
  served at ``/metrics`` by the HTTP app.

Without ``opentelemetry-api`` the tracing part costs nothing (no import, no wrapper work).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worldflow.errors import WorldflowError
from worldflow.worlds import (
    AnyEvent,
    EventResult,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepStarted,
    WorkflowRun,
    World,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ["Metrics", "ObservedWorld", "Telemetry", "otel_available", "start_span_context"]

log = logging.getLogger("worldflow.telemetry")

_RECENT = 10_000  # runs whose trace context / step start times are remembered


@functools.cache
def otel_available() -> bool:
    """Whether ``opentelemetry-api`` can be imported here."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def _ns(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1_000_000_000)


def _short(name: str) -> str:
    return name.rpartition(":")[2]


class Metrics:
    """Counters of what the engine's runs did, per workflow and per step."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def add(self, name: str, labels: tuple[tuple[str, str], ...], value: int = 1) -> None:
        """Add ``value`` to the counter ``name`` with ``labels``."""
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0) + value

    def value(self, name: str, **labels: str) -> int:
        """A counter's value (0 if it never moved)."""
        return self.counters.get((name, tuple(sorted(labels.items()))), 0)

    def render(self) -> str:
        """The counters in the Prometheus text exposition format."""
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(self.counters.items()):
            if name not in seen:
                seen.add(name)
                lines.append(f"# HELP {name} {_HELP.get(name, name)}")
                lines.append(f"# TYPE {name} counter")
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_HELP = {
    "worldflow_runs_started_total": "Runs started.",
    "worldflow_runs_completed_total": "Runs that completed.",
    "worldflow_runs_failed_total": "Runs that failed.",
    "worldflow_runs_cancelled_total": "Runs that were cancelled.",
    "worldflow_step_attempts_total": "Step attempts started.",
    "worldflow_step_retries_total": "Step attempts that failed and will be retried.",
    "worldflow_step_failures_total": "Steps that failed for good.",
}


def start_span_context(workflow: str, run_id: str) -> dict[str, str]:
    """Open and close a ``start <workflow>`` span under the caller's current span; the
    carrier (``traceparent``) of its context, for ``run_created.trace_context``.

    Empty when OpenTelemetry is not installed.
    """
    if not otel_available():
        return {}
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer("worldflow")
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span(
        f"start {_short(workflow)}",
        kind=trace.SpanKind.PRODUCER,
        attributes={"worldflow.workflow": workflow, "worldflow.run_id": run_id},
    ):
        propagate.inject(carrier)
    return carrier


class Telemetry:
    """Turns appended events into spans (if a tracer is given) and counters."""

    def __init__(self, tracer: Tracer | None = None, metrics: Metrics | None = None) -> None:
        self.tracer = tracer
        self.metrics = metrics if metrics is not None else Metrics()
        self._contexts: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._attempts: dict[tuple[str, str], datetime] = {}

    @classmethod
    def default(cls) -> Telemetry:
        """Counters always; spans when OpenTelemetry is installed (through the global tracer
        provider, so spans go wherever the application configured them)."""
        if not otel_available():
            return cls()
        from opentelemetry import trace

        return cls(trace.get_tracer("worldflow"))

    async def context_of(self, world: World, run_id: str) -> dict[str, str]:
        """A run's trace context: remembered, else read from its ``run_created``."""
        known = self._contexts.get(run_id)
        if known is not None:
            return known
        context: dict[str, str] = {}
        try:
            first = (await world.list_events(run_id, limit=1)).items
        except WorldflowError:
            first = []
        if first and isinstance(first[0], RunCreated):
            context = dict(first[0].trace_context)
        self.remember(run_id, context)
        return context

    def remember(self, run_id: str, context: dict[str, str]) -> None:
        """Keep a run's trace context (from its ``run_created``)."""
        self._contexts[run_id] = context
        self._contexts.move_to_end(run_id)
        while len(self._contexts) > _RECENT:
            self._contexts.popitem(last=False)

    def observe(self, result: EventResult) -> None:
        """Take what one append stored."""
        run = result.run
        workflow = run.workflow_name
        metrics = self.metrics
        for event in result.events:
            if isinstance(event, RunCreated):
                metrics.add("worldflow_runs_started_total", (("workflow", workflow),))
                self.remember(run.run_id, dict(event.trace_context))
            elif isinstance(event, StepStarted):
                self._attempts[(run.run_id, event.correlation_id)] = event.created_at
                while len(self._attempts) > 10 * _RECENT:  # results recorded elsewhere
                    del self._attempts[next(iter(self._attempts))]
                name = self._step_name(result, event.correlation_id)
                metrics.add("worldflow_step_attempts_total", (("step", name),))
            elif isinstance(event, StepCompleted | StepFailed | StepRetrying):
                self._step_ended(result, event)
            elif isinstance(event, RunCompleted | RunFailed | RunCancelled):
                self._run_ended(run, event)

    @staticmethod
    def _step_name(result: EventResult, step_id: str) -> str:
        for view in result.steps:
            if view.step_id == step_id:
                return _short(view.step_name)
        return step_id

    def _context(self, run_id: str) -> Any:
        carrier = self._contexts.get(run_id) or {}
        from opentelemetry import propagate

        return propagate.extract(carrier)

    def _step_ended(
        self,
        result: EventResult,
        event: StepCompleted | StepFailed | StepRetrying,
    ) -> None:
        run = result.run
        name = self._step_name(result, event.correlation_id)
        started = self._attempts.pop((run.run_id, event.correlation_id), None)
        view = next((s for s in result.steps if s.step_id == event.correlation_id), None)
        if isinstance(event, StepRetrying):
            self.metrics.add("worldflow_step_retries_total", (("step", name),))
        elif isinstance(event, StepFailed):
            self.metrics.add("worldflow_step_failures_total", (("step", name),))
        if self.tracer is None:
            return
        if started is None:
            started = view.started_at if view is not None else None
        from opentelemetry import trace

        span = self.tracer.start_span(
            f"step {name}",
            context=self._context(run.run_id),
            kind=trace.SpanKind.INTERNAL,
            start_time=_ns(started or event.created_at),
            attributes={
                "worldflow.run_id": run.run_id,
                "worldflow.workflow": run.workflow_name,
                "worldflow.step": view.step_name if view is not None else name,
                "worldflow.step_id": event.correlation_id,
                "worldflow.attempt": view.attempt if view is not None else 0,
                "worldflow.outcome": event.type,
            },
        )
        if isinstance(event, StepFailed | StepRetrying):
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.error.message))
            span.set_attribute("worldflow.error", event.error.name)
            if isinstance(event, StepRetrying) and event.retry_after is not None:
                span.set_attribute("worldflow.retry_after", event.retry_after.isoformat())
        span.end(end_time=_ns(event.created_at))

    def _run_ended(
        self,
        run: WorkflowRun,
        event: RunCompleted | RunFailed | RunCancelled,
    ) -> None:
        kind = {
            RunCompleted: "worldflow_runs_completed_total",
            RunFailed: "worldflow_runs_failed_total",
            RunCancelled: "worldflow_runs_cancelled_total",
        }[type(event)]
        self.metrics.add(kind, (("workflow", run.workflow_name),))
        if self.tracer is None:
            return
        from opentelemetry import trace

        span = self.tracer.start_span(
            f"run {_short(run.workflow_name)}",
            context=self._context(run.run_id),
            start_time=_ns(run.created_at),
            attributes={
                "worldflow.run_id": run.run_id,
                "worldflow.workflow": run.workflow_name,
                "worldflow.status": str(run.status),
            },
        )
        if isinstance(event, RunFailed):
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.error.message))
        span.end(end_time=_ns(event.created_at))
        self._contexts.pop(run.run_id, None)


class ObservedWorld:
    """A world whose appends are also shown to a :class:`Telemetry` (everything else is the
    wrapped world's, attribute for attribute)."""

    def __init__(self, world: World, telemetry: Telemetry) -> None:
        self._world = world
        self._telemetry = telemetry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)

    @property
    def wrapped(self) -> World:
        """The world underneath."""
        return self._world

    async def append(self, run_id: str, events: Sequence[AnyEvent], **options: Any) -> EventResult:
        """Append through the wrapped world, then show the stored events to telemetry."""
        result: EventResult = await self._world.append(run_id, events, **options)
        telemetry = self._telemetry
        try:
            if telemetry.tracer is not None and _ends_something(result.events):
                await telemetry.context_of(self._world, result.run.run_id)
            telemetry.observe(result)
        except Exception:  # telemetry must never fail a write that was stored
            log.exception("telemetry failed for run %s", run_id)
        return result


def _ends_something(events: Sequence[AnyEvent]) -> bool:
    return any(isinstance(e, _ENDS) for e in events)


_ENDS = (StepCompleted, StepFailed, StepRetrying, RunCompleted, RunFailed, RunCancelled)
