"""The memory world's logs and views, and how an appended batch is stored in them.

The rules live in ``worldflow.worlds._rules``: a :class:`~worldflow.worlds._rules.Batch`
reads a run's state through a :class:`StoredRun` (every lookup a dict access on the run's
own state, or the world's token table, so an append costs the same however many runs the
world holds), and :func:`commit` writes what it produced into the tables; it cannot fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from worldflow.worlds._events import AnyEvent
from worldflow.worlds._records import Hook, HookStatus, Step, Wait, WaitStatus, WorkflowRun
from worldflow.worlds._rules import Batch
from worldflow.worlds._wakeups import Signal

__all__ = ["LogState", "RunState", "StoredRun", "StreamState", "commit"]


@dataclass(slots=True, eq=False)
class StreamState:
    """One named stream of a run."""

    chunks: list[bytes] = field(default_factory=list)
    closed: bool = False


class RunState:
    """Everything the world holds about one run, indexed for O(1) access.

    Args:
        run: The run's view.
        index: Its creation order in the world (the ``list_runs`` cursor).
    """

    __slots__ = (
        "changed",
        "claimed_hook_ids",
        "ended",
        "events",
        "hook_order",
        "hook_pos",
        "hooks",
        "index",
        "live_hooks",
        "run",
        "step_order",
        "steps",
        "streams",
        "streams_changed",
        "wait_order",
        "wait_pos",
        "waiting",
        "waits",
    )

    def __init__(self, run: WorkflowRun, index: int) -> None:
        # Written out rather than a dataclass's default factories: one is made per run.
        self.run = run
        self.index = index
        self.events: list[AnyEvent] = []  # events[i].seq == i + 1
        self.steps: dict[str, Step] = {}
        self.step_order: list[str] = []
        self.hooks: dict[str, Hook] = {}
        self.hook_order: list[str] = []
        self.hook_pos: dict[str, int] = {}  # position in LogState.hook_order
        self.claimed_hook_ids: set[str] = set()  # incl. those refused by conflict
        self.live_hooks: set[str] = set()
        self.waits: dict[str, Wait] = {}
        self.wait_order: list[str] = []
        self.wait_pos: dict[str, int] = {}  # position in LogState.wait_order
        self.waiting: set[str] = set()
        self.streams: dict[str, StreamState] = {}
        self.changed = Signal()  # the log grew
        self.ended = Signal()  # it became terminal (or went away): result waiters
        self.streams_changed = Signal()  # a stream grew, closed or ended


@dataclass(slots=True, eq=False)
class LogState:
    """The world-wide tables. Purged entries leave ``None`` holes so positions stay cursors."""

    runs: dict[str, RunState] = field(default_factory=dict)
    run_order: list[RunState | None] = field(default_factory=list)
    hook_order: list[tuple[str, str] | None] = field(default_factory=list)
    wait_order: list[tuple[str, str] | None] = field(default_factory=list)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # live token -> (run, hook)

    def purge(self, state: RunState) -> None:
        """Forget a run and everything indexed by it."""
        run_id = state.run.run_id
        del self.runs[run_id]
        self.run_order[state.index] = None
        for pos in state.hook_pos.values():
            self.hook_order[pos] = None
        for pos in state.wait_pos.values():
            self.wait_order[pos] = None
        for hook_id in state.live_hooks:  # empty for a terminal run; kept for safety
            self.tokens.pop(state.hooks[hook_id].token, None)


class StoredRun:
    """The rules' view (:class:`~worldflow.worlds._rules.RunView`) of one run of a
    :class:`LogState`: dict lookups on its state and the world's token table."""

    __slots__ = ("_log", "_state")

    def __init__(self, log: LogState, run_id: str) -> None:
        self._log = log
        self._state = log.runs.get(run_id)

    def run(self) -> WorkflowRun | None:
        state = self._state
        return state.run if state is not None else None

    def step(self, step_id: str) -> Step | None:
        state = self._state
        return state.steps.get(step_id) if state is not None else None

    def hook(self, hook_id: str) -> Hook | None:
        state = self._state
        return state.hooks.get(hook_id) if state is not None else None

    def wait(self, wait_id: str) -> Wait | None:
        state = self._state
        return state.waits.get(wait_id) if state is not None else None

    def hook_id_used(self, hook_id: str) -> bool:
        state = self._state
        return state is not None and hook_id in state.claimed_hook_ids

    def token_holder(self, token: str) -> str | None:
        held = self._log.tokens.get(token)
        return held[0] if held else None

    def live_hook_ids(self) -> Iterable[str]:
        state = self._state
        return state.live_hooks if state is not None else ()

    def waiting_wait_ids(self) -> Iterable[str]:
        state = self._state
        return state.waiting if state is not None else ()

    def other_run(self, run_id: str) -> WorkflowRun | None:
        state = self._log.runs.get(run_id)
        return state.run if state is not None else None


def commit(log: LogState, batch: Batch) -> RunState:
    """Write a batch into the stored state (cannot fail) and return the run's state."""
    assert batch.run is not None, "commit() after a batch that created no run"
    run = batch.run
    if batch.events:
        run = msgspec.structs.replace(run, last_seq=batch.seq, updated_at=batch.now)
    state = log.runs.get(batch.run_id)
    if state is None:
        state = RunState(run=run, index=len(log.run_order))
        log.run_order.append(state)
        log.runs[batch.run_id] = state
    else:
        stored = state.run
        if stored.owner_id != run.owner_id or stored.owner_epoch != run.owner_epoch:
            # A batch never changes the owner (a claim is applied after the commit). A world
            # that awaits its write between building the batch and committing it (the file
            # world) may see the owner change meanwhile (a release at an engine's stop, a
            # claim): the batch's copy of the view is older, and must not undo it.
            run = msgspec.structs.replace(
                run, owner_id=stored.owner_id, owner_epoch=stored.owner_epoch
            )
    state.run = run
    state.events.extend(batch.events)
    if batch.steps:
        steps = state.steps
        for step_id, step in batch.steps.items():
            if step_id not in steps:
                state.step_order.append(step_id)
            steps[step_id] = step
    if batch.hooks:
        _commit_hooks(log, batch, state)
    if batch.claimed:
        state.claimed_hook_ids |= batch.claimed
    for token, holder in batch.tokens.items():
        if holder is None:
            log.tokens.pop(token, None)
        else:
            log.tokens[token] = (batch.run_id, holder)
    if batch.waits:
        _commit_waits(log, batch, state)
    return state


def _commit_hooks(log: LogState, batch: Batch, state: RunState) -> None:
    for hook_id, hook in batch.hooks.items():
        if hook_id not in state.hooks:
            state.hook_order.append(hook_id)
            state.hook_pos[hook_id] = len(log.hook_order)
            log.hook_order.append((batch.run_id, hook_id))
        state.hooks[hook_id] = hook
        if hook.status is HookStatus.ACTIVE:
            state.live_hooks.add(hook_id)
        else:
            state.live_hooks.discard(hook_id)


def _commit_waits(log: LogState, batch: Batch, state: RunState) -> None:
    for wait_id, wait in batch.waits.items():
        if wait_id not in state.waits:
            state.wait_order.append(wait_id)
            state.wait_pos[wait_id] = len(log.wait_order)
            log.wait_order.append((batch.run_id, wait_id))
        state.waits[wait_id] = wait
        if wait.status is WaitStatus.WAITING:
            state.waiting.add(wait_id)
        else:
            state.waiting.discard(wait_id)
