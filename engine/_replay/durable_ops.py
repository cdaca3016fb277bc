"""The durable operations a workflow body starts, and the commands it owes the log.

Each operation (a step call, a timer, a wait for a named event, a hook) gets the next
correlation id when the body starts it and lives in the instance's table until the run ends.
Its ``*_created`` event is a command until the log records it; some operations later owe a
closing command (``wait_completed`` for a timer or event wait the body gave up or satisfied,
``hook_disposed`` for a disposed hook), which is held back until the creation is recorded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from worldflow import _serde
from worldflow.worlds import (
    NULL,
    AnyEvent,
    ChildOutcome,
    HookCreated,
    HookDisposed,
    StepCreated,
    WaitCompleted,
    WaitCreated,
)

__all__ = [
    "EventWaitOp",
    "HookOp",
    "Intent",
    "Op",
    "StepOp",
    "TimerOp",
    "decode_payload",
    "deliver_payload",
    "iso",
    "snippet",
]

_SNIPPET = 160


def snippet(payload: msgspec.Raw | bytes) -> str:
    """A payload's JSON text, shortened for messages."""
    text = bytes(payload).decode("utf-8", "replace")
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def iso(when: datetime | None) -> str:
    """A timestamp for messages (``2024-01-01T00:00:00Z``)."""
    if when is None:
        return "never"
    return when.isoformat().replace("+00:00", "Z")


class Op:
    """One durable operation of the body.

    Attributes:
        number: Its place in call order, from 1 (the Nth operation gets the Nth id).
        corr: Its correlation id.
        created: Its ``*_created`` (or ``hook_conflict``) event was delivered from the log.
        created_seq: The ``seq`` of that event.
        wanted: The body still wants it created (false once it gave it up before creation).
        done: Finished for the body (result delivered, fired, given up or disposed).
        closing: The body owes a closing command once the creation is recorded.
        close_intent: That closing command, once queued.
    """

    kind: ClassVar[str] = "operation"
    __slots__ = (
        "close_intent",
        "closing",
        "corr",
        "created",
        "created_seq",
        "done",
        "number",
        "wanted",
    )

    def __init__(self, number: int, corr: str) -> None:
        self.number = number
        self.corr = corr
        self.created = False
        self.created_seq = 0
        self.wanted = True
        self.done = False
        self.closing = False
        self.close_intent: Intent | None = None

    def describe(self) -> str:
        """What the operation is, for messages and ``blocked_on``."""
        raise NotImplementedError

    def creation(self, run_id: str) -> AnyEvent:
        """The ``*_created`` command for this operation."""
        raise NotImplementedError


class StepOp(Op):
    """A step call: recorded name and encoded input, resolved by the step's result."""

    kind = "step"
    __slots__ = (
        "attempts",
        "future",
        "input",
        "label",
        "resume_data",
        "retry_after",
        "step_name",
        "suspended",
        "terminal",
    )

    def __init__(
        self,
        number: int,
        corr: str,
        step_name: str,
        input: msgspec.Raw,
        future: asyncio.Future[Any],
    ) -> None:
        # Op.__init__ written out: one of these is made per step call.
        self.number = number
        self.corr = corr
        self.created = False
        self.created_seq = 0
        self.wanted = True
        self.done = False
        self.closing = False
        self.close_intent: Intent | None = None
        self.step_name = step_name
        self.input = input
        self.future = future
        self.attempts = 0  # step_started events fed
        self.retry_after: datetime | None = None  # from step_retrying, until step_woken
        self.resume_data: msgspec.Raw = NULL  # from the last step_resumed
        self.suspended = False
        self.terminal = False
        self.label: str | None = None

    def describe(self) -> str:
        if self.label is not None:
            return self.label
        return f"step {self.step_name!r} with input {snippet(self.input)}"

    def blocked(self) -> str:
        """The ``blocked_on`` line."""
        base = self.label or f"step {self.step_name}"
        if self.suspended:
            return f"{base} (suspended, waiting for resume_step)"
        return base

    def creation(self, run_id: str) -> AnyEvent:
        return StepCreated(
            run_id=run_id, correlation_id=self.corr, step_name=self.step_name, input=self.input
        )


class TimerOp(Op):
    """A durable timer: ``worldflow.sleep`` (a future) or an asyncio timer (a handle)."""

    kind = "timer"
    __slots__ = ("future", "handle", "resume_at")

    def __init__(
        self,
        number: int,
        corr: str,
        resume_at: datetime,
        *,
        future: asyncio.Future[Any] | None = None,
        handle: asyncio.TimerHandle | None = None,
    ) -> None:
        super().__init__(number, corr)
        self.resume_at = resume_at
        self.future = future
        self.handle = handle

    def describe(self) -> str:
        what = "sleep" if self.handle is None else "asyncio timer"
        return f"{what} until {iso(self.resume_at)}"

    def creation(self, run_id: str) -> AnyEvent:
        return WaitCreated(run_id=run_id, correlation_id=self.corr, resume_at=self.resume_at)

    def closing_event(self, run_id: str) -> AnyEvent:
        """The ``wait_completed`` the body owes when it gave the timer up."""

        return WaitCompleted(run_id=run_id, correlation_id=self.corr)


class EventWaitOp(Op):
    """``wait_for_event(name, timeout)``: resolved by ``event_raised``, or times out."""

    kind = "event wait"
    __slots__ = ("event_name", "future", "resume_at")

    def __init__(
        self,
        number: int,
        corr: str,
        event_name: str,
        resume_at: datetime | None,
        future: asyncio.Future[Any],
    ) -> None:
        super().__init__(number, corr)
        self.event_name = event_name
        self.resume_at = resume_at
        self.future = future

    def describe(self) -> str:
        limit = "" if self.resume_at is None else f" (timeout at {iso(self.resume_at)})"
        return f"wait for event {self.event_name!r}{limit}"

    def creation(self, run_id: str) -> AnyEvent:
        return WaitCreated(
            run_id=run_id,
            correlation_id=self.corr,
            resume_at=self.resume_at,
            event_name=self.event_name,
        )

    def closing_event(self, run_id: str) -> AnyEvent:
        """The ``wait_completed`` the body owes once the event came (or it gave up)."""

        return WaitCompleted(run_id=run_id, correlation_id=self.corr)


class HookOp(Op):
    """A hook: payloads go to waiting awaiters in order, or wait in ``buffer``."""

    kind = "hook"
    __slots__ = (
        "awaiters",
        "buffer",
        "conflict_run_id",
        "conflicted",
        "disposed",
        "is_webhook",
        "label",
        "metadata",
        "raw",
        "token",
    )

    def __init__(
        self, number: int, corr: str, token: str, metadata: msgspec.Raw, is_webhook: bool
    ) -> None:
        super().__init__(number, corr)
        self.token = token
        self.metadata = metadata
        self.is_webhook = is_webhook
        self.buffer: deque[msgspec.Raw | ChildOutcome] = deque()
        self.raw = False  # payloads go to the body as recorded (a child's outcome)
        self.awaiters: deque[asyncio.Future[Any]] = deque()
        self.conflicted = False
        self.conflict_run_id: str | None = None
        self.disposed = False
        self.label: str | None = None

    def describe(self) -> str:
        return f"{'webhook' if self.is_webhook else 'hook'} with token {self.token!r}"

    def waiting(self) -> bool:
        """Whether some awaiter is waiting for a payload."""
        return any(not f.done() for f in self.awaiters)

    def creation(self, run_id: str) -> AnyEvent:
        return HookCreated(
            run_id=run_id,
            correlation_id=self.corr,
            token=self.token,
            metadata=self.metadata,
            is_webhook=self.is_webhook,
        )

    def closing_event(self, run_id: str) -> AnyEvent:
        """The ``hook_disposed`` the body owes after ``dispose()``."""

        return HookDisposed(run_id=run_id, correlation_id=self.corr)


class Intent:
    """A command the body owes the log, in the order the body produced it.

    ``kind`` is ``create`` (an operation's ``*_created``), ``close`` (its closing command),
    ``state`` (``state_updated``), ``patch`` (``patch_marked``) or ``end``
    (``run_completed`` / ``run_failed``). It is owed until ``recorded``; a creation also
    stops being owed once its operation is created or given up (``op.wanted`` false):
    ``WorkflowInstance._commands`` drops it then.
    """

    __slots__ = ("_event", "kind", "op", "recorded", "run_id")

    def __init__(
        self, kind: str, event: AnyEvent | None, op: Op | None = None, *, run_id: str = ""
    ) -> None:
        self.kind = kind
        self._event = event  # None for a creation: made when asked for (a replay never asks)
        self.op = op
        self.run_id = run_id
        self.recorded = False

    @property
    def event(self) -> AnyEvent:
        """The command's event."""
        event = self._event
        if event is None:
            assert self.op is not None, "an intent without an event is an operation's creation"
            event = self._event = self.op.creation(self.run_id)
        return event


def deliver_payload(
    future: asyncio.Future[Any], payload: msgspec.Raw | ChildOutcome, *, raw: bool
) -> None:
    """Resolve a hook awaiter: the payload as recorded (``raw``) or decoded."""
    if future.done():
        return
    if raw or not isinstance(payload, msgspec.Raw):
        future.set_result(payload)
    else:
        decode_payload(future, payload)


def decode_payload(future: asyncio.Future[Any], payload: msgspec.Raw) -> None:
    """Resolve ``future`` with the decoded payload (or the decoding error)."""
    if future.done():
        return
    try:
        value = _serde.decode(payload)
    except Exception as exc:  # a payload this code cannot read: the body decides
        future.set_exception(exc)
    else:
        future.set_result(value)
