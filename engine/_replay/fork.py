"""Forking a run from a step: the first events of the fork's log, made from the source's log.

A fork is a new run whose log begins with copies of what the source recorded before the step
it forks from, so it replays from its own log alone (the source is never read again, nor
written). The copies are the source's events with the fork's ids: the Nth operation of a body
has the Nth correlation id of its run (``Operations``), so an event about the source's Nth
operation becomes one about the fork's Nth. Default hook tokens, child run ids and the child
hooks' tokens follow the run id the same way and are mapped too.

**What "before the step" means.** A position in the source's log: the step's creation
(``step_created``'s seq). Only what the source had recorded before it is copied, so the
fork's replay sees what the source's body had seen when it called the step. A result that
arrived later, even of an operation called earlier (a partner in the same ``gather`` or
``FirstOf``), is not copied: that step runs again in the fork. (Copying it would decide a
race in the fork's first replay, before the fork's own step could take part: the step the
fork was made from could lose at once and never run.) From the point on the fork lives its
own life. A child workflow started before the step is
reused if its outcome was recorded; otherwise its start runs again and the fork gets a child
of its own. Patch markers, state updates and raised events before the step are copied too.

Pure: no I/O, no clock (``ids_at`` is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from worldflow._replay.child_contract import (
    CHILD_TOKEN_PREFIX,
    START_CHILD_STEP,
    StartChildInput,
    child_hook_token,
    child_run_id,
    decode_outcome,
    start_child_input,
)
from worldflow._replay.op_table import (
    draw_token,
    id_base,
    operation_id,
    operation_number,
    token_random,
)
from worldflow.errors import EntityConflictError, StepNotFoundError
from worldflow.worlds import (
    NULL,
    AnyEvent,
    ChildEnded,
    EventRaised,
    ForkPoint,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    PatchMarked,
    Payload,
    RunCreated,
    RunStarted,
    StateUpdated,
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

__all__ = ["ForkPlan", "plan_fork"]

_STEP_EVENTS = (StepStarted, StepRetrying, StepCompleted, StepFailed, StepSuspended, StepResumed)
_start_child_decoder = msgspec.json.Decoder(StartChildInput)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # an unstamped event's time


class ForkPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What a fork's first batch holds besides its ``run_created``.

    Attributes:
        fork: The ``run_created.fork`` field.
        events: ``run_started`` and the copies, for the fork's run id, unstamped.
        user_tokens: Hook tokens the copies create that the code chose (not drawn from the
            run's seed): the fork needs them free.
        step_name: The name of the step the fork runs again.
        step_input: The source's recorded input of that step.
    """

    fork: ForkPoint
    events: list[AnyEvent]
    user_tokens: list[str]
    step_name: str
    step_input: Payload


class _Mapper:
    """Turns the source's ids into the fork's (by operation number)."""

    def __init__(
        self, source: RunCreated, fork_run_id: str, fork_seed: str, ids_at: datetime
    ) -> None:
        self.source_run_id = source.run_id
        self.fork_run_id = fork_run_id
        self._source_base = id_base(source.run_id)
        self._fork_base = id_base(fork_run_id)
        self._ids_ms = int(ids_at.timestamp() * 1000)
        self._source_tokens = token_random(source.run_id, source.seed)
        self._fork_tokens = token_random(fork_run_id, fork_seed)
        self._tokens: dict[str, str] = {}
        self._drawn = 0

    def number(self, corr: str) -> int:
        number = operation_number(corr, self._source_base)
        if number is None:
            raise ValueError(f"{corr!r} is not a correlation id of run {self.source_run_id}")
        return number

    def corr(self, corr: str) -> str:
        prefix = corr.partition("_")[0]
        return operation_id(prefix, self._ids_ms, self._fork_base, self.number(corr))

    def child(self, source_child: str) -> str:
        """The fork's child run id for a child the source started."""
        corr = source_child.removeprefix(f"{self.source_run_id}-")
        return child_run_id(self.fork_run_id, self.corr(corr))

    def token(self, token: str, draws: int) -> str | None:
        """The fork's default token for a source default token (``None``: not a default
        token; at most ``draws`` tokens were drawn before it)."""
        while token not in self._tokens and self._drawn < draws:
            self._drawn += 1
            theirs = draw_token(self._source_tokens)
            ours = draw_token(self._fork_tokens)
            self._tokens[theirs] = ours
        return self._tokens.get(token)


def _find_step(events: Sequence[AnyEvent], step_id: str) -> StepCreated:
    for event in events:
        if isinstance(event, StepCreated) and event.correlation_id == step_id:
            return event
    raise StepNotFoundError(f"run {events[0].run_id} has no step {step_id!r}")


def plan_fork(
    events: Sequence[AnyEvent],
    *,
    step_id: str,
    fork_run_id: str,
    fork_seed: str,
    ids_at: datetime,
    step_input: Payload | None,
) -> ForkPlan:
    """The copies that start a fork of the run whose whole log is ``events``, from its step
    ``step_id``, run again with ``step_input`` (``None``: the input the code computes).

    Raises:
        StepNotFoundError: the log has no such step.
        ValueError: the step starts a child workflow (fork the child run instead), or the
            log is not a run's log.
        EntityConflictError: the copied part holds a hook conflict (a fork cannot recreate
            one: the token's holder is gone or another run's).
    """
    if not events or not isinstance(events[0], RunCreated):
        raise ValueError("a fork needs the source's whole log, from its run_created")
    source = events[0]
    point = _find_step(events, step_id)
    if point.step_name == START_CHILD_STEP:
        raise ValueError(
            f"step {step_id!r} of run {source.run_id} starts a child workflow: fork the child "
            "run itself, or fork this run from a step"
        )
    mapper = _Mapper(source, fork_run_id, fork_seed, ids_at)
    cut = mapper.number(step_id)
    fork_id = fork_run_id
    copies: list[AnyEvent] = []
    user_tokens: list[str] = []
    child_hooks: dict[str, str] = {}  # source child hook id -> source child run id
    child_steps: dict[str, str] = {}  # source start-child step id -> source child run id
    ended: set[str] = set()  # source child run ids whose outcome is copied
    started = False

    # The times the source's body saw (a fork's own copies were replayed at its source's).
    seen = source.fork.clock if source.fork is not None else []
    timed: list[AnyEvent] = [
        msgspec.structs.replace(e, created_at=seen[e.seq - 2]) if 1 < e.seq <= len(seen) + 1 else e
        for e in events[1:]
    ]
    for event in timed:
        early = event.seq < point.seq
        match event:
            case RunStarted() if early and not started:
                started = True
                copies.append(RunStarted(run_id=fork_id, created_at=event.created_at))
            case StepCreated() if early:
                data = event.input
                if event.step_name == START_CHILD_STEP:
                    start = _start_child_decoder.decode(event.input)
                    child_steps[event.correlation_id] = start.run_id
                    data = start_child_input(
                        start.workflow_name, mapper.child(start.run_id), start.input
                    )
                copies.append(
                    StepCreated(
                        run_id=fork_id,
                        correlation_id=mapper.corr(event.correlation_id),
                        step_name=event.step_name,
                        input=data,
                        created_at=event.created_at,
                    )
                )
            case WaitCreated() if early:
                copies.append(
                    msgspec.structs.replace(
                        event, run_id=fork_id, correlation_id=mapper.corr(event.correlation_id)
                    )
                )
            case HookCreated() if early:
                token = event.token
                if token.startswith(CHILD_TOKEN_PREFIX):
                    child = token.removeprefix(CHILD_TOKEN_PREFIX)
                    child_hooks[event.correlation_id] = child
                    token = child_hook_token(mapper.child(child))
                else:
                    mapped = mapper.token(token, mapper.number(event.correlation_id))
                    if mapped is None:
                        user_tokens.append(token)
                    token = mapped or token
                copies.append(
                    msgspec.structs.replace(
                        event,
                        run_id=fork_id,
                        correlation_id=mapper.corr(event.correlation_id),
                        token=token,
                    )
                )
            case HookConflict() if early:
                raise EntityConflictError(
                    f"run {source.run_id} met a hook conflict (token {event.token!r}) before "
                    f"step {step_id!r}: a fork cannot recreate it; fork from an earlier step"
                )
            case HookReceived() if early:
                of_child = child_hooks.get(event.correlation_id)
                corr = mapper.corr(event.correlation_id)
                if of_child is None:
                    copies.append(
                        msgspec.structs.replace(event, run_id=fork_id, correlation_id=corr)
                    )
                    continue
                outcome = decode_outcome(event.payload)  # an older log's child outcome
                if outcome is not None:
                    ended.add(of_child)
                    copies.append(_child_ended(mapper, fork_id, corr, of_child, outcome, event))
            case ChildEnded() if early:
                ended.add(event.child_run_id)
                corr = mapper.corr(event.correlation_id)
                copies.append(
                    _child_ended(mapper, fork_id, corr, event.child_run_id, event.outcome, event)
                )
            case WaitCompleted() | HookDisposed() if early:
                copies.append(
                    msgspec.structs.replace(
                        event, run_id=fork_id, correlation_id=mapper.corr(event.correlation_id)
                    )
                )
            case EventRaised() | StateUpdated() | PatchMarked() if early:
                copies.append(msgspec.structs.replace(event, run_id=fork_id))
            case (
                StepStarted()
                | StepRetrying()
                | StepCompleted()
                | StepFailed()
                | StepSuspended()
                | StepResumed()
            ) if early:
                assert event.correlation_id is not None
                copies.append(
                    msgspec.structs.replace(
                        event, run_id=fork_id, correlation_id=mapper.corr(event.correlation_id)
                    )
                )
            case _:
                pass  # run control (suspend, stall, ...) and everything after the point
    # A child whose outcome is not copied starts again (the fork gets its own child): its
    # start step keeps only its creation, so it is pending.
    rerun = {mapper.corr(s) for s, child in child_steps.items() if child not in ended}
    kept = [e for e in copies if not (isinstance(e, _STEP_EVENTS) and e.correlation_id in rerun)]
    fork = ForkPoint(
        step_id=step_id,
        step_name=point.step_name,
        step_number=cut,
        step_input=NULL if step_input is None else step_input,
        ids_at=ids_at,
        clock=[e.created_at for e in kept],
    )
    events_out = [_unstamped(e) for e in kept]
    return ForkPlan(
        fork=fork,
        events=events_out,
        user_tokens=user_tokens,
        step_name=point.step_name,
        step_input=point.input,
    )


def _child_ended(
    mapper: _Mapper,
    fork_id: str,
    corr: str,
    child: str,
    outcome: object,
    event: AnyEvent,
) -> ChildEnded:
    return ChildEnded(
        run_id=fork_id,
        correlation_id=corr,
        child_run_id=mapper.child(child),
        outcome=outcome,  # type: ignore[arg-type]  # a ChildOutcome, decoded or recorded
        created_at=event.created_at,
    )


def _unstamped(event: AnyEvent) -> AnyEvent:
    """The copy as an append takes it (the world stamps seq, id and time)."""
    return msgspec.structs.replace(event, seq=0, event_id="", created_at=_EPOCH)
