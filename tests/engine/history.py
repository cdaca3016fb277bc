"""A fake log for replay tests: stamps events like a world, feeds them, checks replays.

``History`` plays the runtime's part without a world: it appends the instance's commands to
its own list of events (stamping ``seq``, ``event_id`` and ``created_at``), feeds the stored
events back (the live path), and adds outside events (step results, timers firing, hook
payloads, raised events). ``check_replay`` then builds fresh instances from the whole log, fed
at once and in random chunkings, and asserts they end in exactly the live ``Progress``.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from worldflow import WorkflowFunction, _serde
from worldflow._registry import Registry
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow.worlds import (
    NULL,
    AnyEvent,
    ErrorInfo,
    EventRaised,
    HookConflict,
    HookCreated,
    HookReceived,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStarted,
    RunStatus,
    RunSuspended,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepStarted,
    WaitCompleted,
    WaitCreated,
    WorkflowRun,
)
from worldflow.worlds._events import stamp

T0 = datetime(2024, 1, 1, tzinfo=UTC)
RUN_ID = "wrun_test"

_OPEN: list[WorkflowInstance] = []


def close_all() -> None:
    """Close every instance the histories made (as the runtime closes evicted instances)."""
    while _OPEN:
        _OPEN.pop().close()


def _encode(progress: Progress) -> bytes:
    return msgspec.json.encode(progress)


def call_plain(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a test step's function to its end (test steps never really await)."""
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        try:
            result.send(None)
        except StopIteration as stop:
            return stop.value
        result.close()
        raise AssertionError("test steps must not suspend")
    return result


class History:
    """One run of ``wf`` on a fake log, driven the way the runtime drives a live instance."""

    def __init__(
        self,
        wf: WorkflowFunction[..., Any],
        *args: Any,
        run_id: str = RUN_ID,
        initial_state: Any = None,
        metadata: dict[str, str] | None = None,
        resource_id: str | None = None,
        check: bool = True,
        taken_tokens: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.definition = wf.definition
        self.run_id = run_id
        self.events: list[AnyEvent] = []
        self.clock = T0
        self.auto_check = check
        self.taken_tokens = dict(taken_tokens or {})
        """Hook tokens held by other runs: the world stores hook_conflict for them."""
        self.registry = Registry([wf])
        self.feeds = 0
        self.append(
            RunCreated(
                run_id=run_id,
                workflow_name=self.definition.name,
                input=self.definition.encode_input(*args, **kwargs),
                initial_state=_serde.encode(initial_state) if initial_state is not None else NULL,
                metadata=metadata or {},
                resource_id=resource_id,
            ),
            RunStarted(run_id=run_id),
        )
        self.instance = self.new_instance()
        self.progress = self.instance.feed(self.events)
        self.settle()

    # -- the fake world ------------------------------------------------------------------------

    def append(self, *events: AnyEvent) -> list[AnyEvent]:
        """Store ``events`` as a world would: dense seq, ids, one second apart."""
        stored = []
        for event in events:
            if isinstance(event, HookCreated) and event.token in self.taken_tokens:
                event = HookConflict(
                    run_id=event.run_id,
                    correlation_id=event.correlation_id,
                    token=event.token,
                    conflicting_run_id=self.taken_tokens[event.token],
                )
            self.clock += timedelta(seconds=1)
            seq = len(self.events) + 1
            stamped = stamp(event, seq=seq, event_id=f"evnt_{seq:06d}", created_at=self.clock)
            self.events.append(stamped)
            stored.append(stamped)
        return stored

    def run_view(self) -> WorkflowRun:
        """The run's view as a world would return it now."""
        return WorkflowRun(
            run_id=self.run_id,
            workflow_name=self.definition.name,
            status=RunStatus.RUNNING,
            input=NULL,
            created_at=self.events[0].created_at,
            updated_at=self.clock,
            last_seq=len(self.events),
        )

    def new_instance(self) -> WorkflowInstance:
        """A fresh instance, as after a restart."""
        instance = WorkflowInstance(self.definition, self.run_view(), registry=self.registry)
        _OPEN.append(instance)
        return instance

    # -- the live path -------------------------------------------------------------------------

    def feed(self, events: list[AnyEvent]) -> Progress:
        self.feeds += 1
        self.progress = self.instance.feed(events)
        return self.progress

    def settle(self) -> Progress:
        """Append the commands and feed them back until the instance asks for nothing."""
        rounds = 0
        while self.progress.commands:
            rounds += 1
            assert rounds < 100, "commands never settle"
            self.feed(self.append(*self.progress.commands))
        return self.progress

    def send(self, *events: AnyEvent) -> Progress:
        """Outside events arrive: append, feed, settle, and (by default) check replays."""
        self.feed(self.append(*events))
        self.settle()
        if self.auto_check:
            self.check_replay()
        return self.progress

    # -- replays -------------------------------------------------------------------------------

    def replay(self, chunks: Iterable[int] | None = None) -> tuple[WorkflowInstance, Progress]:
        """A fresh instance fed the whole log (in chunks of the given sizes, if any)."""
        instance = self.new_instance()
        if chunks is None:
            return instance, instance.feed(self.events)
        pos = 0
        progress = instance.feed([])
        for size in chunks:
            progress = instance.feed(self.events[pos : pos + size])
            pos += size
        progress = instance.feed(self.events[pos:])
        return instance, progress

    def check_replay(self, seeds: int = 3) -> None:
        """Replays of the log (whole, one event at a time, random chunks) end like the live run."""
        live = _encode(self.progress)
        plans: list[list[int] | None] = [None, [1] * len(self.events)]
        for seed in range(seeds):
            rng = random.Random(seed)
            plan: list[int] = []
            left = len(self.events)
            while left > 0:
                size = rng.randint(1, max(1, left))
                plan.append(size)
                left -= size
            plans.append(plan)
        for chunks in plans:
            instance, progress = self.replay(chunks)
            try:
                assert _encode(progress) == live, (
                    f"replay with chunks {chunks} differs from the live run:\n"
                    f"  live:   {self.progress}\n  replay: {progress}"
                )
            finally:
                instance.close()

    def close(self) -> None:
        self.instance.close()

    # -- outside events ------------------------------------------------------------------------

    def created(self, corr: str) -> AnyEvent:
        for event in self.events:
            if event.correlation_id == corr and isinstance(
                event, (StepCreated, WaitCreated, HookCreated)
            ):
                return event
        raise KeyError(corr)

    def step_created(self, corr: str) -> StepCreated:
        """The ``step_created`` event of step ``corr``."""
        created = self.created(corr)
        assert isinstance(created, StepCreated)
        return created

    def step_ids(self, name: str | None = None) -> list[str]:
        """Pending step ids (optionally of the step whose name ends with ``name``)."""
        out = []
        for corr in self.progress.pending_steps:
            created = self.created(corr)
            assert isinstance(created, StepCreated)
            if name is None or created.step_name.endswith(name):
                out.append(corr)
        return out

    def step_id(self, name: str | None = None) -> str:
        ids = self.step_ids(name)
        assert ids, f"no pending step {name!r}; pending: {self.progress.pending_steps}"
        return ids[0]

    def complete(self, name_or_id: str, value: Any = None, *, started: bool = True) -> Progress:
        """Record the result of a pending step."""
        corr = name_or_id if name_or_id.startswith("step_") else self.step_id(name_or_id)
        events: list[AnyEvent] = [StepStarted(run_id=self.run_id, correlation_id=corr)]
        events = events if started else []
        events.append(
            StepCompleted(run_id=self.run_id, correlation_id=corr, result=_serde.encode(value))
        )
        return self.send(*events)

    def fail(
        self,
        name_or_id: str,
        error: str = "ValueError",
        message: str = "boom",
        code: str | None = None,
    ) -> Progress:
        """Record that a pending step failed for good."""
        corr = name_or_id if name_or_id.startswith("step_") else self.step_id(name_or_id)
        info = ErrorInfo(name=error, message=message, code=code)
        return self.send(StepFailed(run_id=self.run_id, correlation_id=corr, error=info))

    def run_steps(self) -> Progress:
        """Run every pending step's real function, one at a time, until none is pending."""
        for _ in range(1000):
            if not self.progress.pending_steps:
                return self.progress
            corr = self.progress.pending_steps[0]
            created = self.created(corr)
            assert isinstance(created, StepCreated)
            definition = self.registry.step(created.step_name)
            args, kwargs = definition.decode_input(created.input)
            try:
                value = call_plain(definition.fn, args, kwargs)
            except Exception as exc:
                info = ErrorInfo(name=type(exc).__name__, message=str(exc))
                self.send(StepFailed(run_id=self.run_id, correlation_id=corr, error=info))
            else:
                self.complete(corr, value)
        raise AssertionError("steps never finished")

    def fire(self, wait_id: str | None = None) -> Progress:
        """A timer is due: ``wait_completed`` for it (the earliest if none is named)."""
        if wait_id is None:
            assert self.progress.waits, "no timer is waiting"
            wait_id = min(self.progress.waits, key=lambda w: w[1])[0]
        return self.send(WaitCompleted(run_id=self.run_id, correlation_id=wait_id))

    def hook_id(self, token: str) -> str:
        for event in self.events:
            if isinstance(event, HookCreated) and event.token == token:
                return event.correlation_id
        raise KeyError(f"no hook with token {token!r}")

    def resume_hook(self, token: str, payload: Any) -> Progress:
        """``resume_hook(token, payload)``."""
        corr = self.hook_id(token)
        return self.send(
            HookReceived(run_id=self.run_id, correlation_id=corr, payload=_serde.encode(payload))
        )

    def raise_event(self, name: str, payload: Any = None) -> Progress:
        """``raise_event(run_id, name, payload)``."""
        return self.send(EventRaised(run_id=self.run_id, name=name, payload=_serde.encode(payload)))

    def suspend(self) -> Progress:
        return self.send(RunSuspended(run_id=self.run_id))

    def resume(self) -> Progress:
        return self.send(RunResumed(run_id=self.run_id))

    def cancel(self) -> Progress:
        return self.send(RunCancelled(run_id=self.run_id))

    # -- outcome -------------------------------------------------------------------------------

    @property
    def result(self) -> Any:
        """The run's recorded output (fails the test if the run did not complete)."""
        last = self.events[-1]
        if isinstance(last, RunFailed):
            raise AssertionError(f"the run failed: {last.error.name}: {last.error.message}")
        assert isinstance(last, RunCompleted), f"the run has not completed: {self.progress}"
        return _serde.decode(last.output)

    @property
    def error(self) -> ErrorInfo:
        """The run's recorded error (fails the test if the run did not fail)."""
        last = self.events[-1]
        assert isinstance(last, RunFailed), f"the run has not failed: {last}"
        return last.error

    def types(self) -> list[str]:
        """The log's event types, in order."""
        return [e.type for e in self.events]
