"""The operation table of a workflow body: what the authoring primitives do to it.

:class:`Operations` owns everything a body can start (step calls, timers, event waits, hooks,
child workflows), the correlation ids it draws for them, the workflow's state and clock, and
the commands the body owes the log (:class:`~worldflow._replay.durable_ops.Intent`). The
workflow instance (``worldflow._replay.instance``) builds on it and adds the other half:
feeding recorded events to those operations one idle point at a time.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import msgspec

from worldflow import _serde
from worldflow._durations import Duration, parse_duration
from worldflow._registry import StepDefinition, WorkflowDefinition
from worldflow._replay.child_contract import (
    CHILD_TOKEN_PREFIX,
    START_CHILD_STEP,
    child_hook_token,
    child_result,
    child_run_id,
    start_child_input,
)
from worldflow._replay.durable_ops import (
    EventWaitOp,
    HookOp,
    Intent,
    Op,
    StepOp,
    TimerOp,
    deliver_payload,
)
from worldflow._replay.loop import WorkflowLoop
from worldflow.errors import (
    HookConflictError,
    HookNotFoundError,
    NondeterminismError,
    StepFailedError,
)
from worldflow.worlds import (
    NULL,
    RESERVED_TOKEN_PREFIX,
    ChildOutcome,
    ErrorInfo,
    ForkPoint,
    StateUpdated,
)
from worldflow.worlds._ids import UlidSequence, check_id

__all__ = [
    "HookClosed",
    "Operations",
    "aware",
    "draw_token",
    "id_base",
    "operation_id",
    "operation_number",
    "token_random",
]

_TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = (1 << 80) - 1

# The id scheme of a run's operations, in one place (the instance draws them, a fork maps
# them): the Nth operation's id is ``{kind}_`` + the ULID of the run's id time and the random
# part ``id_base(run_id) + N``; default hook tokens are drawn from ``token_random``.


def id_base(run_id: str) -> int:
    """The random part of a run's ids before its first operation."""
    return random.Random(run_id).getrandbits(79)


def operation_id(prefix: str, ms: int, base: int, number: int) -> str:
    """The id of operation ``number`` of a run (``ms``: the ids' time, ``base``: its
    :func:`id_base`)."""
    return f"{prefix}_{UlidSequence(ms).at(base + number)}"


def operation_number(corr: str, base: int) -> int | None:
    """The call-order number of the operation with id ``corr`` in the run of ``base``."""
    if "_" not in corr:
        return None
    value = 0
    for char in corr.partition("_")[2].upper():
        digit = _ULID_ALPHABET.find(char)
        if digit < 0:
            return None
        value = value * 32 + digit
    number = (value & _RANDOM_BITS) - base
    return number if 0 < number < (1 << 32) else None


def token_random(run_id: str, seed: str) -> random.Random:
    """Where a run's default hook tokens come from (``run_created.seed``: its secret)."""
    return random.Random(f"{run_id}:{seed}:tokens")


def draw_token(source: random.Random) -> str:
    """The next default hook token."""
    return "".join(source.choices(_TOKEN_ALPHABET, k=26))


def _ignore_cancel(op: Any, future: asyncio.Future[Any]) -> None:
    """A released table's cancel callback: the body is gone, nobody waits."""


class HookClosed(Exception):
    """Set on a hook awaiter when the hook is disposed (async iteration ends)."""


def aware(when: datetime) -> datetime:
    """``when`` with UTC as its zone if it has none."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Operations:
    """The operations, ids, state and owed commands of one run's body.

    Args:
        run_id: The run; it seeds the correlation ids, hook tokens and ``random()``.
        created_at: The run's creation time: the ids' time part and the clock's start.
    """

    def __init__(self, run_id: str, created_at: datetime) -> None:
        self.run_id = run_id
        self._now = aware(created_at)
        self._ulid_ms = int(self._now.timestamp() * 1000)
        # The Nth operation gets the Nth id: a seeded base plus the call count, so ids are
        # the same on every replay and sort in call order.
        self._id_base = id_base(run_id)
        self._ids = UlidSequence(self._ulid_ms)
        self._future_cancelled = self._on_future_cancelled  # bound once: set on every future
        # Seeding a Random costs more than the rest of a new instance: make them on first use.
        self._token_seed: str | None = None  # set by seed_tokens()
        self._tokens: random.Random | None = None
        self._user_random_: random.Random | None = None
        self._loop = WorkflowLoop(
            clock=self._clock,
            on_timer=self._on_timer,
            on_timer_cancelled=self._on_timer_cancelled,
            owner=self,
        )
        self._count = 0
        self._ops: dict[str, Op] = {}
        self._by_ulid: dict[str, Op] = {}  # the same ops by id without the kind prefix
        self._live: dict[str, Op] = {}  # started and not done: what the body waits on
        self._open_steps: dict[str, StepOp] = {}  # created, no final result yet
        self._open_waits: dict[str, TimerOp | EventWaitOp] = {}  # created timers still due
        self._woken: dict[str, datetime] = {}  # wait_woken: timer id -> its new due time
        self._timers: dict[int, TimerOp] = {}  # id(asyncio handle) -> its timer
        self._event_waits: dict[str, deque[EventWaitOp]] = {}
        self._events: dict[str, deque[msgspec.Raw]] = {}  # raised before anyone waited
        self._intents: list[Intent] = []
        self._state_intents: deque[Intent] = deque()
        self._state: msgspec.Raw = NULL
        self._finished = False
        self._fork: ForkPoint | None = None
        self._fork_error: NondeterminismError | None = None

    # -- what the table answers -------------------------------------------------------------

    def step_call(self, step_id: str) -> StepOp | None:
        """The step call ``step_id`` as the fed log has it (name, input, attempts started,
        ``retry_after``, resume data, suspended), or ``None`` if it is not one of this
        body's calls or has its final result: what the runtime launches an attempt from."""
        op = self._ops.get(step_id)
        if type(op) is not StepOp or op.terminal:
            return None
        return op

    def children_waiting(self) -> dict[str, str]:
        """Hook id -> child run id of each child workflow whose outcome the body still
        waits for (its hook is recorded, no outcome fed yet); empty once the body ended."""
        if self._finished:
            return {}
        prefix = CHILD_TOKEN_PREFIX
        return {
            op.corr: op.token[len(prefix) :]
            for op in self._live.values()
            if type(op) is HookOp and op.created and not op.buffer and op.token.startswith(prefix)
        }

    def _blocked_on(self) -> list[str]:
        """What the body waits on, readably (``Progress.blocked_on``)."""
        out: list[str] = []
        for op in self._live.values():
            if isinstance(op, StepOp):
                if not op.future.done():
                    out.append(op.blocked())
            elif isinstance(op, TimerOp):
                out.append(op.describe())
            elif isinstance(op, EventWaitOp):
                out.append(f"event {op.event_name}")
            elif isinstance(op, HookOp) and op.waiting():
                out.append(op.label or f"hook {op.token}")
        return out

    def _to_hook(self, op: HookOp, payload: msgspec.Raw | ChildOutcome) -> None:
        while op.awaiters:
            future = op.awaiters.popleft()
            if not future.done():
                deliver_payload(future, payload, raw=op.raw)
                return
        op.buffer.append(payload)

    def _step_failure(self, op: StepOp, error: ErrorInfo) -> StepFailedError:
        what = op.label or f"step {op.step_name!r}"
        return StepFailedError(
            f"{what} failed: {error.name}: {error.message}",
            step_name=op.step_name,
            step_id=op.corr,
            error_name=error.name,
            error_code=error.code,
            error_message=error.message,
        )

    def fork_from(self, point: ForkPoint) -> None:
        """This run is a fork (``run_created.fork``): its ids have the time the copies were
        written with, and its operation ``point.step_number`` runs with ``point.step_input``."""
        self._fork = point
        self._ulid_ms = int(aware(point.ids_at).timestamp() * 1000)
        self._ids = UlidSequence(self._ulid_ms)
        if point.clock:
            # The copies replay at the source's times, which are before the fork's creation.
            self._now = aware(point.clock[0])

    def _forked_input(self, number: int, step_name: str, payload: msgspec.Raw) -> msgspec.Raw:
        """The input of step call ``number``: the fork's new one at the fork's step."""
        point = self._fork
        if point is None or number != point.step_number:
            return payload
        if step_name != point.step_name:
            self._fork_error = NondeterminismError(
                f"run {self.run_id} was forked from step {point.step_name!r} (operation "
                f"#{number}), but the code now calls step {step_name!r} there: the workflow "
                "changed before the fork's step since the fork was made. Deploy code that "
                "calls that step there (patched() keeps both paths), or fork the source again.",
                run_id=self.run_id,
                recorded=f"step {point.step_name!r}",
                current=f"step {step_name!r}",
            )
            return payload
        return payload if bytes(point.step_input) == b"null" else point.step_input

    def _clock(self) -> float:
        return self._now.timestamp()

    # -- the table ----------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> tuple[int, str]:
        self._count += 1
        return self._count, f"{prefix}_{self._ids.at(self._id_base + self._count)}"

    def _register(self, op: Op, *, intent: bool = True) -> None:
        self._ops[op.corr] = op
        self._by_ulid[op.corr.partition("_")[2]] = op
        self._live[op.corr] = op
        if self._finished:
            op.wanted = False
        elif intent:
            self._intents.append(Intent("create", None, op, run_id=self.run_id))

    def _op_done(self, op: Op) -> None:
        op.done = True
        self._live.pop(op.corr, None)

    def _close(self, op: Op) -> None:
        """The body owes ``op`` its closing command (sent once the creation is recorded)."""
        if op.closing:
            return
        op.closing = True
        self._open_waits.pop(op.corr, None)
        if op.created:
            self._queue_close(op)

    def _queue_close(self, op: Op) -> None:
        if self._finished or op.close_intent is not None:
            return
        if isinstance(op, (TimerOp, EventWaitOp, HookOp)):
            op.close_intent = Intent("close", op.closing_event(self.run_id), op)
            self._intents.append(op.close_intent)

    def _release(self) -> None:
        """Break the reference cycles of a closed table (each operation and its future point
        at each other, and every future at this table's bound method), so refcounting frees
        the instance when the runtime drops it."""
        self._future_cancelled = _ignore_cancel
        for op in self._ops.values():
            future = getattr(op, "future", None)
            if future is not None:
                self._loop.on_cancel(future, None, _ignore_cancel)
        self._loop.release()

    def _watch(self, op: Op, future: asyncio.Future[Any]) -> None:
        self._loop.on_cancel(future, op, self._future_cancelled)

    def _on_future_cancelled(self, op: Op, future: asyncio.Future[Any]) -> None:
        # Called from inside future.cancel(): the body's task was cancelled while it waited.
        if op.done or self._finished:
            return
        self._abandon(op)

    def _abandon(self, op: Op) -> None:
        """The body stopped waiting for ``op`` (its task was cancelled)."""
        self._op_done(op)
        if not op.created:
            op.wanted = False
        if isinstance(op, (TimerOp, EventWaitOp)):
            self._close(op)

    def _on_timer(self, handle: asyncio.TimerHandle) -> None:
        number, corr = self._next_id("wait")
        resume_at = datetime.fromtimestamp(handle.when(), UTC)
        op = TimerOp(number, corr, resume_at, handle=handle)
        self._timers[id(handle)] = op
        self._register(op)

    def _on_timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        op = self._timers.pop(id(handle), None)
        if op is not None and not op.done and not self._finished:
            self._abandon(op)

    # -- what the primitives call ------------------------------------------------------------

    async def call_step(
        self, definition: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Record a call of ``definition`` and wait for its recorded result."""
        payload = definition.encode_input(*args, **kwargs)
        number, corr = self._next_id("step")
        if self._fork is not None:
            payload = self._forked_input(number, definition.name, payload)
        op = StepOp(number, corr, definition.name, payload, self._loop.create_future())
        self._register(op)
        self._watch(op, op.future)
        return await op.future

    async def call_child(
        self, definition: WorkflowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Start a child run of ``definition`` and wait for its outcome (see ``_child``)."""
        child_input = definition.encode_input(*args, **kwargs)
        number, corr = self._next_id("step")
        child_id = child_run_id(self.run_id, corr)
        step_input = start_child_input(definition.name, child_id, child_input)
        step = StepOp(number, corr, START_CHILD_STEP, step_input, self._loop.create_future())
        label = f"child workflow {definition.name} (run {child_id})"
        step.label = f"{label}: starting"
        hook = self.create_hook(child_hook_token(child_id), None, is_webhook=False, reserved=True)
        hook.label = label
        self._register(step)  # after the hook: the hook exists before the child can finish
        self._watch(step, step.future)
        try:
            await step.future
            outcome = await self.hook_next(hook, raw=True)
        finally:
            self.hook_dispose(hook)
        return child_result(definition.name, child_id, outcome)

    async def sleep(self, duration: Duration | datetime) -> None:
        """A durable timer: ``wait_created{resume_at}``, resumed by ``wait_completed``."""
        if isinstance(duration, datetime):
            if duration.tzinfo is None:
                raise ValueError(
                    "sleep() needs a timezone-aware datetime (e.g. datetime(..., tzinfo=UTC)); "
                    f"got the naive {duration!r}"
                )
            resume_at = duration.astimezone(UTC)
        else:
            resume_at = self._now + parse_duration(duration)
        if resume_at <= self._now:
            await asyncio.sleep(0)
            return
        number, corr = self._next_id("wait")
        op = TimerOp(number, corr, resume_at, future=self._loop.create_future())
        assert op.future is not None
        self._register(op)
        self._watch(op, op.future)
        await op.future

    def seed_tokens(self, seed: str) -> None:
        """Seed default hook tokens with the run's secret (``run_created.seed``).

        Without it a default token would follow from the run id alone, and a caller who
        chose a guessable run id (``order-1``) would have guessable webhook URLs.
        """
        self._token_seed = seed
        self._tokens = None

    def create_hook(
        self, token: str | None, metadata: Any, *, is_webhook: bool, reserved: bool = False
    ) -> HookOp:
        """Start a hook operation (``hook_created``); the token is seeded if not given.

        Tokens starting with ``worldflow:`` are the engine's own (``reserved``): user code
        gets a ``ValueError`` for them.
        """
        if token is not None:
            check_id(token, "a hook token")  # the one id rule every world applies
        if token is not None and not reserved and token.startswith(RESERVED_TOKEN_PREFIX):
            raise ValueError(
                f"hook token {token!r} starts with {RESERVED_TOKEN_PREFIX!r}, which is reserved "
                "for the engine's own hooks (a child workflow's outcome); choose another token"
            )
        payload = _serde.encode(metadata)
        number, corr = self._next_id("hook")
        if token is None:
            if self._tokens is None:
                self._tokens = (
                    random.Random(f"{self.run_id}:tokens")
                    if self._token_seed is None
                    else token_random(self.run_id, self._token_seed)
                )
            token = draw_token(self._tokens)
        op = HookOp(number, corr, token, payload, is_webhook)
        self._register(op)
        return op

    def hook_next(self, op: HookOp, *, raw: bool = False) -> asyncio.Future[Any]:
        """A future for the hook's next payload (buffered ones first, in order); ``raw``
        leaves it as recorded (a child's outcome is read by the child contract)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if raw:
            op.raw = True
        if op.buffer:
            deliver_payload(future, op.buffer.popleft(), raw=op.raw)
        elif op.conflicted:
            future.set_exception(self._conflict_error(op))
        elif op.disposed:
            future.set_exception(HookClosed())
        else:
            op.awaiters.append(future)
        return future

    def hook_dispose(self, op: HookOp) -> None:
        """The body is done with the hook: ``hook_disposed``; its token is free again."""
        if op.disposed or op.conflicted:
            return
        if not op.created:
            op.wanted = False
        self._close(op)
        self._hook_closed(op)

    def _hook_closed(self, op: HookOp) -> None:
        op.disposed = True
        self._op_done(op)
        while op.awaiters:
            future = op.awaiters.popleft()
            if not future.done():
                future.set_exception(HookClosed())

    @staticmethod
    def hook_gone(op: HookOp) -> HookNotFoundError:
        """The error for awaiting a disposed hook that has no payload left."""
        return HookNotFoundError(
            f"hook {op.token!r} was disposed; create a new hook to receive more payloads"
        )

    def _conflict_error(self, op: HookOp) -> HookConflictError:
        holder = f" (held by run {op.conflict_run_id})" if op.conflict_run_id else ""
        return HookConflictError(
            f"hook token {op.token!r} is already used by a live hook{holder}; choose another "
            "token, or dispose the other hook first"
        )

    async def wait_for_event(self, name: str, timeout: Duration | None) -> Any:
        """The next payload of the named event; an event raised earlier is kept for it."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an event name must be a non-empty str, got {name!r}")
        resume_at = None if timeout is None else self._now + parse_duration(timeout)
        buffered = self._events.get(name)
        if buffered:
            return _serde.decode(buffered.popleft())
        number, corr = self._next_id("wait")
        op = EventWaitOp(number, corr, name, resume_at, self._loop.create_future())
        self._register(op)
        self._event_waits.setdefault(name, deque()).append(op)
        self._watch(op, op.future)
        return await op.future

    def get_state(self) -> Any:
        """The workflow's state (a fresh copy)."""
        return _serde.decode(self._state)

    def set_state(self, value: Any) -> None:
        """Replace the workflow's state; recorded as ``state_updated``."""
        payload = _serde.encode(value)
        self._state = payload
        if self._finished:
            return
        intent = Intent("state", StateUpdated(run_id=self.run_id, state=payload))
        self._intents.append(intent)
        self._state_intents.append(intent)

    def now(self) -> datetime:
        """The workflow's clock: the ``created_at`` of the last event delivered."""
        return self._now

    @property
    def _user_random(self) -> random.Random:
        made = self._user_random_
        if made is None:
            made = self._user_random_ = random.Random(f"{self.run_id}:random")
        return made

    def random(self) -> float:
        """A replay-safe random float in [0, 1)."""
        return self._user_random.random()

    def uuid4(self) -> uuid.UUID:
        """A replay-safe random UUID (version 4)."""
        return uuid.UUID(int=self._user_random.getrandbits(128), version=4)
