"""The memory world's rules, as the file world applies them: replayed from a log at open, and
guarded against appends still on their way to disk.

The file world keeps its views in the memory world's tables (:class:`LogState`) and checks
every append with the memory world's :class:`Batch`, so both worlds answer alike by
construction. Two twists:

* :class:`ReplayBatch` re-applies a logged record. Its events are already stamped, and
  whether a ``hook_created`` got its token was decided when it was appended (the log holds
  ``hook_created`` or ``hook_conflict``), so a replay never re-decides it: logs are replayed
  one run at a time, not in the order the runs interleaved.
* :class:`GuardedBatch` is a live append's batch. An append commits to the views only once it
  is durable, so a token claimed by another run's append still in flight is not in the token
  table yet; the batch treats it as taken, so two live hooks never share a token.

:func:`reorder` puts the world-wide tables back in creation order after a replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from worldflow.errors import InvalidEventError
from worldflow.worlds._events import AnyEvent, HookConflict
from worldflow.worlds._memory.log import Batch, LogState, RunState
from worldflow.worlds._records import HookStatus

__all__ = ["GuardedBatch", "ReplayBatch", "rebuild_tokens", "reorder"]


class ReplayBatch(Batch):
    """Re-applies one logged record (a batch of stamped events) to the views."""

    def __init__(self, log: LogState, run_id: str, events: Sequence[AnyEvent]) -> None:
        # a batch is stamped with one time, which is also what its views were given
        super().__init__(log, run_id, events[0].created_at)
        for event in events:
            self.add(event)
        if len(self.events) != len(events):
            skipped = [e.type for e in events if e not in self.events]
            raise InvalidEventError(f"the rules treat {', '.join(skipped)} as a no-op")

    def add(self, event: object) -> None:
        if isinstance(event, HookConflict):
            self.claimed.add(event.correlation_id)  # the id is used, the token was not given
            self._store(event)
            return
        super().add(event)

    def _store(self, ev: AnyEvent) -> None:
        self.seq += 1
        if ev.seq != self.seq:
            raise InvalidEventError(f"event seq {ev.seq} where {self.seq} was due")
        self.events.append(ev)

    def _token_holder(self, token: str) -> str | None:
        return None  # decided at append time; the log says how


class GuardedBatch(Batch):
    """A live append's batch: tokens that in-flight appends claim count as held."""

    def __init__(
        self, log: LogState, run_id: str, now: datetime, in_flight: dict[str, str]
    ) -> None:
        super().__init__(log, run_id, now)
        self._in_flight = in_flight

    def _token_holder(self, token: str) -> str | None:
        holder = super()._token_holder(token)
        if holder is None and token not in self.tokens:
            other = self._in_flight.get(token)
            if other is not None and other != self.run_id:
                return other
        return holder

    def claimed_tokens(self) -> list[str]:
        """The tokens this batch gives to new hooks."""
        return [token for token, hook_id in self.tokens.items() if hook_id is not None]


def reorder(log: LogState, keys: Mapping[str, Mapping[str, str]]) -> None:
    """After loading every run: runs, hooks and waits in creation order, and the live tokens.

    ``keys`` gives, per run, the ids of the events that created it (under ``""``), its hooks
    and its waits: ULIDs minted in append order, so sorting by them gives creation order.
    """
    states = sorted(log.runs.values(), key=lambda s: keys[s.run.run_id][""])
    log.run_order = list[RunState | None](states)
    hooks: list[tuple[str, str, str]] = []
    waits: list[tuple[str, str, str]] = []
    for index, state in enumerate(states):
        state.index = index
        run_id = state.run.run_id
        run_keys = keys[run_id]
        hooks.extend((run_keys[h], run_id, h) for h in state.hook_order)
        waits.extend((run_keys[w], run_id, w) for w in state.wait_order)
    hooks.sort()
    waits.sort()
    log.hook_order = [(run_id, hook_id) for _, run_id, hook_id in hooks]
    for position, (_, run_id, hook_id) in enumerate(hooks):
        log.runs[run_id].hook_pos[hook_id] = position
    log.wait_order = [(run_id, wait_id) for _, run_id, wait_id in waits]
    for position, (_, run_id, wait_id) in enumerate(waits):
        log.runs[run_id].wait_pos[wait_id] = position
    rebuild_tokens(log)


def rebuild_tokens(log: LogState) -> None:
    """The live-token table, from the hooks that are active."""
    log.tokens = {
        hook.token: (state.run.run_id, hook.hook_id)
        for state in log.runs.values()
        for hook in state.hooks.values()
        if hook.status is HookStatus.ACTIVE
    }
