"""A deliberately simple model of the world's append rules, for the stateful test.

It knows nothing of views or Structs: runs, steps, hooks and waits are a few strings and
counters, and a batch is applied to a copy that replaces the model only if every event
was accepted. What it predicts (stored event types, or the error class) is compared with what
the world under test does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    InvalidEventError,
    NotFoundError,
    RunNotFoundError,
    RunNotTerminalError,
    RunTerminalError,
    StepNotFoundError,
    WorldflowError,
)

__all__ = ["MODEL_KINDS", "Model", "Stored"]

TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
STEP_OUTCOMES: Final = frozenset(
    {"step_completed", "step_failed", "step_retrying", "step_suspended"}
)

MODEL_KINDS: Final = (
    "run_created",
    "run_started",
    "run_completed",
    "run_failed",
    "run_cancelled",
    "run_suspended",
    "run_resumed",
    "state_updated",
    "event_raised",
    "step_created",
    "step_started",
    "step_completed",
    "step_failed",
    "step_retrying",
    "step_suspended",
    "step_resumed",
    "wait_created",
    "wait_completed",
    "hook_created",
    "hook_received",
    "hook_disposed",
    # malformed: a wrong run id, an empty correlation id, not an event, a world-only event
    "bad_run_id",
    "bad_correlation_id",
    "bad_object",
    "bad_hook_conflict",
)

Stored = tuple[str, str | None]
"""A stored event as the model predicts it: its type, and for hook_conflict the holder run."""


@dataclass
class MStep:
    status: str = "pending"
    attempt: int = 0


@dataclass
class MHook:
    token: str
    order: int
    active: bool = True
    received: int = 0


@dataclass
class MWait:
    order: int
    waiting: bool = True


@dataclass
class MRun:
    order: int
    status: str = "pending"
    started: bool = False
    events: list[str] = field(default_factory=list)
    steps: dict[str, MStep] = field(default_factory=dict)
    hooks: dict[str, MHook] = field(default_factory=dict)
    hook_ids: set[str] = field(default_factory=set)  # claimed, including refused by conflict
    waits: dict[str, MWait] = field(default_factory=dict)

    def copy(self) -> MRun:
        return MRun(
            order=self.order,
            status=self.status,
            started=self.started,
            events=list(self.events),
            steps={k: MStep(s.status, s.attempt) for k, s in self.steps.items()},
            hooks={k: MHook(h.token, h.order, h.active, h.received) for k, h in self.hooks.items()},
            hook_ids=set(self.hook_ids),
            waits={k: MWait(w.order, w.waiting) for k, w in self.waits.items()},
        )


@dataclass
class Model:
    """Runs by id; ``counter`` orders creations world-wide (runs, hooks, waits)."""

    runs: dict[str, MRun] = field(default_factory=dict)
    counter: int = 0

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def tokens(self) -> dict[str, tuple[str, str]]:
        """Live token -> (run id, hook id)."""
        return {
            hook.token: (run_id, hook_id)
            for run_id, run in self.runs.items()
            for hook_id, hook in run.hooks.items()
            if hook.active
        }

    def append(
        self, run_id: str, specs: list[tuple[str, str, str]]
    ) -> type[WorldflowError] | list[Stored]:
        """Apply a batch of ``(kind, correlation id, token)``; the error class or what is stored.

        The model changes only if the whole batch is accepted.
        """
        scratch = Model({k: run.copy() for k, run in self.runs.items()}, self.counter)
        stored: list[Stored] = []
        try:
            for kind, corr, token in specs:
                stored.extend(scratch._apply(run_id, kind, corr, token))
        except WorldflowError as exc:
            return type(exc)
        self.runs, self.counter = scratch.runs, scratch.counter
        if stored and run_id in self.runs:
            self.runs[run_id].events.extend(kind for kind, _ in stored)
        return stored

    def purge(self, run_id: str) -> type[WorldflowError] | None:
        """Forget a terminal run; the error class if the world must refuse."""
        run = self.runs.get(run_id)
        if run is None:
            return RunNotFoundError
        if run.status not in TERMINAL:
            return RunNotTerminalError
        del self.runs[run_id]
        return None

    def _apply(self, run_id: str, kind: str, corr: str, token: str) -> list[Stored]:
        if kind.startswith("bad_"):
            raise InvalidEventError(kind)
        run = self.runs.get(run_id)
        if run is None:
            if kind != "run_created":
                raise RunNotFoundError(kind)
            self.runs[run_id] = MRun(order=self._next())
            return [(kind, None)]
        if kind == "run_created":
            raise EntityConflictError(kind)
        if run.status in TERMINAL:
            if kind == "run_cancelled" and run.status == "cancelled":
                return []
            step = run.steps.get(corr)
            if not (kind in STEP_OUTCOMES and step is not None and step.status == "running"):
                raise RunTerminalError(kind)
        if kind.startswith("run_"):
            return self._run_event(run, kind)
        if kind.startswith("step_"):
            self._step_event(run, kind, corr)
        elif kind.startswith("wait_"):
            self._wait_event(run, kind, corr)
        elif kind.startswith("hook_"):
            return self._hook_event(run_id, run, kind, corr, token)
        return [(kind, None)]

    def _run_event(self, run: MRun, kind: str) -> list[Stored]:
        if kind == "run_started":
            if run.status != "pending":
                return []
            run.status, run.started = "running", True
        elif kind == "run_suspended":
            if run.status == "suspended":
                return []
            run.status = "suspended"
        elif kind == "run_resumed":
            if run.status != "suspended":
                return []
            run.status = "running" if run.started else "pending"
        else:  # completed / failed / cancelled: release hooks and waits
            run.status = kind.removeprefix("run_")
            for hook in run.hooks.values():
                hook.active = False
            for wait in run.waits.values():
                wait.waiting = False
        return [(kind, None)]

    def _step_event(self, run: MRun, kind: str, corr: str) -> None:
        step = run.steps.get(corr)
        if kind == "step_created":
            if step is not None:
                raise EntityConflictError(kind)
            run.steps[corr] = MStep()
            return
        if step is None:
            raise StepNotFoundError(kind)
        if step.status in ("completed", "failed"):
            raise EntityConflictError(kind)
        if kind == "step_started":
            if step.status == "suspended":
                raise EntityConflictError(kind)
            step.status, step.attempt = "running", step.attempt + 1
        elif kind == "step_resumed":
            if step.status != "suspended":
                raise EntityConflictError(kind)
            step.status = "pending"
        else:
            step.status = {
                "step_completed": "completed",
                "step_failed": "failed",
                "step_retrying": "pending",
                "step_suspended": "suspended",
            }[kind]

    def _wait_event(self, run: MRun, kind: str, corr: str) -> None:
        wait = run.waits.get(corr)
        if kind == "wait_created":
            if wait is not None:
                raise EntityConflictError(kind)
            run.waits[corr] = MWait(order=self._next())
        elif wait is None:
            raise NotFoundError(kind)
        elif not wait.waiting:
            raise EntityConflictError(kind)
        else:
            wait.waiting = False

    def _hook_event(self, run_id: str, run: MRun, kind: str, corr: str, token: str) -> list[Stored]:
        if kind == "hook_created":
            if corr in run.hook_ids:
                raise EntityConflictError(kind)
            run.hook_ids.add(corr)
            holder = self.tokens().get(token)
            if holder is not None:
                return [("hook_conflict", holder[0])]
            run.hooks[corr] = MHook(token=token, order=self._next())
            return [(kind, None)]
        hook = run.hooks.get(corr)
        if hook is None or not hook.active:
            raise HookNotFoundError(kind)
        if kind == "hook_received":
            hook.received += 1
        else:
            hook.active = False
        return [(kind, None)]
