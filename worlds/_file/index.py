"""The file world's index: a snapshot of the views, so an open need not replay every log.

``index.json`` holds, per run, the views the logs produced (run, steps, hooks, waits, the
hook ids its log used), the ids of the events that created the run, its hooks and its waits
(they order the world-wide listings), and the byte length and line count of the log they
were built from. It is a cache, never the truth: at open an entry is used only if its log
has exactly the recorded length (logs only grow, and a crash only cuts what came after
acknowledged writes), and a run without a usable entry is replayed from its log. A missing,
unreadable or outdated index is rebuilt from the logs.

A run whose views hold a payload over 64 KiB gets a *slim* entry, without the payloads (the
log holds each once already; a 50 MB output must not take another 100 MB here): it is
replayed from its log at open, and the entry still vouches for the log's length.

Runs installed from the index have their events read from the log the first time they are
needed (``list_events``, or an append to that run), so memory holds the events of the runs
in use, not of the whole history.

The writer rewrites the index (atomically) when it closes, and at open when it had to
replay logs. An index written by another index format is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec

from worldflow.worlds._events import AnyEvent, HookCreated, RunCreated, WaitCreated
from worldflow.worlds._memory.log import RunState
from worldflow.worlds._records import (
    NULL,
    Hook,
    HookStatus,
    Step,
    Wait,
    WaitStatus,
    WorkflowRun,
)

__all__ = [
    "INDEX_FILE",
    "WAIT_KEY",
    "IndexEntry",
    "creation_keys",
    "decode_index",
    "encode_index",
]

logger = logging.getLogger("worldflow.worlds.file")

INDEX_FILE: Final = "index.json"
INDEX_VERSION: Final = 2
"""2: a wait's creation key is under ``WAIT_KEY + wait_id`` (1 shared one key between a hook
and a wait of the same id, so the world-wide order of one of them was lost at reopen)."""
WAIT_KEY: Final = "\x00w"
"""The prefix of a wait's creation key (hooks' are their ids): no id holds a control char."""


class IndexEntry(msgspec.Struct, array_like=True, frozen=True):
    """One run in the index; ``keys`` maps ``""`` to the id of its ``run_created`` and each
    hook or wait id to the id of the event that created it."""

    path: str
    size: int
    lines: int
    keys: dict[str, str]
    run: WorkflowRun
    steps: list[Step]
    hooks: list[Hook]
    waits: list[Wait]
    claimed: list[str]
    slim: bool = False
    """The views' payloads were left out (one was over :data:`INLINE_LIMIT`): the entry
    still vouches for the log's length, but the run is replayed from its log at open."""

    def to_state(self) -> RunState:
        """The run's state, without its events (the caller loads them when needed)."""
        state = RunState(run=self.run, index=0)
        state.steps = {step.step_id: step for step in self.steps}
        state.step_order = list(state.steps)
        state.hooks = {hook.hook_id: hook for hook in self.hooks}
        state.hook_order = list(state.hooks)
        state.live_hooks = {h.hook_id for h in self.hooks if h.status is HookStatus.ACTIVE}
        state.waits = {wait.wait_id: wait for wait in self.waits}
        state.wait_order = list(state.waits)
        state.waiting = {w.wait_id for w in self.waits if w.status is WaitStatus.WAITING}
        state.claimed_hook_ids = set(self.claimed)
        return state

    @classmethod
    def of(
        cls, state: RunState, *, path: str, size: int, lines: int, keys: dict[str, str]
    ) -> IndexEntry:
        """The entry for a run's current state (slim if a payload is big: the log already
        holds every payload once, and the index must not hold a second copy of it)."""
        run = state.run
        steps = [state.steps[i] for i in state.step_order]
        hooks = [state.hooks[i] for i in state.hook_order]
        slim = (
            _big(run.input, run.output, run.state)
            or any(_big(s.input, s.output, s.suspend_payload, s.resume_data) for s in steps)
            or any(_big(h.metadata) for h in hooks)
        )
        if slim:
            run = _replace(run, input=NULL, output=NULL, state=NULL)
            steps = [
                _replace(s, input=NULL, output=NULL, suspend_payload=NULL, resume_data=NULL)
                for s in steps
            ]
            hooks = [_replace(h, metadata=NULL) for h in hooks]
        return cls(
            path=path,
            size=size,
            lines=lines,
            keys=keys,
            run=run,
            steps=steps,
            hooks=hooks,
            waits=[state.waits[i] for i in state.wait_order],
            claimed=sorted(state.claimed_hook_ids),
            slim=slim,
        )


INLINE_LIMIT: Final = 64 * 1024
"""The largest payload the index holds; a run with a bigger one gets a slim entry."""
_replace = msgspec.structs.replace


def _big(*payloads: msgspec.Raw) -> bool:
    return any(len(p) > INLINE_LIMIT for p in payloads)


class _Index(msgspec.Struct, frozen=True):
    version: int
    runs: list[IndexEntry]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Index)
_version_decoder = msgspec.json.Decoder(dict[str, object])


def encode_index(entries: Iterable[IndexEntry]) -> bytes:
    """The index file's bytes."""
    return _encoder.encode(_Index(INDEX_VERSION, list(entries)))


def decode_index(path: Path, data: bytes) -> dict[str, IndexEntry]:
    """The entries of an index file by log path; empty (with a note) if it cannot be used."""
    try:
        index = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        try:
            version = _version_decoder.decode(data).get("version")
        except msgspec.DecodeError:
            version = None
        if version is not None and version != INDEX_VERSION:
            logger.info("%s has index format %s; rebuilding it from the logs", path, version)
        else:
            logger.warning("%s is unreadable (%s); rebuilding it from the logs", path, exc)
        return {}
    if index.version != INDEX_VERSION:
        logger.info("%s has index format %s; rebuilding it from the logs", path, index.version)
        return {}
    return {entry.path: entry for entry in index.runs}


def creation_keys(events: Iterable[AnyEvent], keys: dict[str, str]) -> None:
    """Record in ``keys`` the ids of the events that created the run, hooks and waits."""
    for event in events:
        if isinstance(event, RunCreated):
            keys[""] = event.event_id
        elif isinstance(event, HookCreated):
            keys[event.correlation_id] = event.event_id
        elif isinstance(event, WaitCreated):
            keys[WAIT_KEY + event.correlation_id] = event.event_id
