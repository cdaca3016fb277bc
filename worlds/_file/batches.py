"""The rules as the file world applies them: replayed from a log at open, and guarded
against appends still on their way to disk.

The file world keeps its views in the memory world's tables (:class:`LogState`) and checks
every append with the shared rules (``worldflow.worlds._rules``), so every world answers
alike by construction. Two twists:

* :func:`replay_record` re-applies a logged record with a *replay* batch: its events are
  already stamped, and whether a ``hook_created`` got its token was decided when it was
  appended, so logs can be replayed one run at a time, not in the order runs interleaved.
* :class:`GuardedRun` is a live append's view. An append commits to the views only once it
  is durable, so a token claimed by another run's append still in flight is not in the token
  table yet; the view reports it as held, so two live hooks never share a token.

:func:`reorder` puts the world-wide tables back in creation order after a replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from worldflow.worlds._events import AnyEvent
from worldflow.worlds._memory.log import LogState, RunState, StoredRun
from worldflow.worlds._records import HookStatus
from worldflow.worlds._rules import Batch

__all__ = ["GuardedRun", "rebuild_tokens", "reorder", "replay_record"]


def replay_record(log: LogState, run_id: str, events: Sequence[AnyEvent]) -> Batch:
    """A batch that re-applied one logged record (a batch of stamped events) to the views;
    the caller commits it. Raises the rules' error if the record breaks them."""
    # the views take the batch's first event's time, as the live append gave them (an
    # unstamped batch is stamped with one time; a stamped one's first event holds the
    # caller's time, which the rules give its views: worldflow.worlds._rules.Batch)
    batch = Batch(StoredRun(log, run_id), run_id, events[0].created_at, replay=True)
    for event in events:
        batch.add(event)
    return batch


class GuardedRun(StoredRun):
    """A live append's view: tokens that in-flight appends claim count as held."""

    __slots__ = ("_in_flight", "_run_id")

    def __init__(self, log: LogState, run_id: str, in_flight: Mapping[str, str]) -> None:
        super().__init__(log, run_id)
        self._run_id = run_id
        self._in_flight = in_flight

    def token_holder(self, token: str) -> str | None:
        holder = super().token_holder(token)
        if holder is None:
            other = self._in_flight.get(token)
            if other is not None and other != self._run_id:
                return other
        return holder


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
