"""Histories: export a run's log to JSONL, load it back, and replay it against current code.

:func:`replay` is the pre-deploy compatibility check: feed a recorded history (from any world,
or a file written by :func:`export_history`) to the workflow as the code stands now, exactly as
the engine would after a restart. If the code no longer does what the log recorded it raises
:class:`ReplayDivergenceError` (a :class:`~worldflow.NondeterminismError`) that shows the first
divergence side by side, recorded against current; otherwise it returns a :class:`ReplayResult`
saying where the run stands. Replaying is pure: no world, no clock, no step runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldflow import _serde
from worldflow._registry import Registry, WorkflowDefinition, WorkflowFunction
from worldflow._replay.divergence import describe_recorded
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow.errors import InvalidEventError, NondeterminismError
from worldflow.worlds import (
    NULL,
    AnyEvent,
    HookConflict,
    PatchMarked,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunStatus,
    WorkflowRun,
    World,
    decode_event,
    encode_event,
)
from worldflow.worlds._events import CREATION_EVENT_TYPES

__all__ = [
    "Divergence",
    "ReplayDivergenceError",
    "ReplayResult",
    "export_history",
    "fetch_history",
    "load_history",
    "replay",
    "write_history",
]

History = Sequence[AnyEvent] | str | os.PathLike[str]
_PAGE = 1000
_CONTEXT = 3  # rows of the side-by-side shown before the divergence
# Events that record something the workflow code did (the rest come from outside).
_CODE_EVENTS = CREATION_EVENT_TYPES | {
    "hook_conflict",
    "state_updated",
    "patch_marked",
    "run_completed",
}


# -- moving histories around ---------------------------------------------------------------------


async def fetch_history(world: World, run_id: str) -> list[AnyEvent]:
    """Every event of ``run_id`` from ``world``, in ``seq`` order."""
    events: list[AnyEvent] = []
    while True:
        after = events[-1].seq if events else 0
        page = await world.list_events(run_id, after_seq=after, limit=_PAGE)
        events.extend(page.items)
        if not page.has_more:
            return events


def write_history(events: Sequence[AnyEvent], path: str | os.PathLike[str]) -> int:
    """Write ``events`` to ``path`` as JSONL (one event per line); returns how many."""
    data = b"".join(encode_event(e) + b"\n" for e in events)
    Path(path).write_bytes(data)
    return len(events)


async def export_history(world: World, run_id: str, path: str | os.PathLike[str]) -> int:
    """Save a run's whole log to ``path`` as JSONL, for :func:`replay` in a test or in CI.

    Example::

        await export_history(world, "o-1", "tests/histories/order-o-1.jsonl")

    Returns how many events were written.
    """
    return write_history(await fetch_history(world, run_id), path)


def load_history(path: str | os.PathLike[str]) -> list[AnyEvent]:
    """Read a JSONL history written by :func:`export_history`.

    Raises:
        InvalidEventError: a line is not an event (the message names the line).
    """
    events: list[AnyEvent] = []
    for number, line in enumerate(Path(path).read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(decode_event(line))
        except InvalidEventError as exc:
            raise InvalidEventError(f"{os.fspath(path)}, line {number}: {exc}") from None
    return events


# -- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """Where a history and the current code part.

    Attributes:
        seq: The recorded event where they part.
        recorded: What the log says the code did there.
        current: What the code does there now.
        rows: ``(seq, recorded, current)`` for the code's operations up to the divergence
            (``current`` is ``""`` where the code did nothing new).
    """

    seq: int
    recorded: str
    current: str
    rows: list[tuple[int, str, str]] = field(default_factory=list)

    def table(self) -> str:
        """The rows side by side, the diverging one marked."""
        shown = self.rows[-(_CONTEXT + 1) :]
        width = max([len("recorded"), *(len(r) for _, r, _ in shown)])
        width = min(width, 70)
        lines = [f"    {'seq':>5}  {'recorded':<{width}}  current code"]
        for seq, recorded, current in shown:
            mark = "   <-- differs" if seq == self.seq else ""
            lines.append(f"    {seq:>5}  {recorded[:width]:<{width}}  {current}{mark}")
        return "\n".join(lines)


class ReplayDivergenceError(NondeterminismError):
    """A recorded history does not replay against the current code.

    Attributes:
        divergence: Where and how they part (also in the message, side by side).
        cause: The engine's own nondeterminism message, when replay raised one.
    """

    def __init__(self, message: str, divergence: Divergence, cause: str | None = None) -> None:
        super().__init__(message)
        self.divergence = divergence
        self.cause = cause


@dataclass(frozen=True)
class ReplayResult:
    """A history that replays cleanly, and where its run stands.

    Attributes:
        run_id: The recorded run.
        workflow_name: Its workflow.
        events: How many events were replayed.
        status: The recorded run's status at the end of the history.
        finished: Whether the code has ended (returned, raised, or the run was ended).
        output: What the code returns, when it completed (the recorded output, checked).
        blocked_on: What the code waits for now, when the run is still going.
        commands: Events the code would append next (a run that was interrupted before its
            engine appended them), as the engine would.
    """

    run_id: str
    workflow_name: str
    events: int
    status: RunStatus
    finished: bool
    output: Any = None
    blocked_on: list[str] = field(default_factory=list)
    commands: list[AnyEvent] = field(default_factory=list)


def _definition(workflow: Any) -> WorkflowDefinition:
    if isinstance(workflow, WorkflowFunction):
        return workflow.definition
    if isinstance(workflow, WorkflowDefinition):
        return workflow
    raise TypeError(f"replay() needs a @workflow function, got {workflow!r}")


def _status(events: Sequence[AnyEvent]) -> RunStatus:
    status = RunStatus.RUNNING
    for event in events:
        match event:
            case RunCompleted():
                return RunStatus.COMPLETED
            case RunFailed():
                return RunStatus.FAILED
            case RunCancelled():
                return RunStatus.CANCELLED
            case _ if event.type == "run_suspended":
                status = RunStatus.SUSPENDED
            case _ if event.type in ("run_resumed", "run_unstalled"):
                status = RunStatus.RUNNING
            case _ if event.type == "run_stalled":
                status = RunStatus.STALLED
    return status


def _describe(event: AnyEvent) -> str:
    if isinstance(event, RunFailed):
        return f"the workflow raised {event.error.name}: {event.error.message}"
    return describe_recorded(event)


def _same_end(code: AnyEvent, recorded: AnyEvent) -> bool:
    if isinstance(code, RunCompleted) and isinstance(recorded, RunCompleted):
        return bool(_serde.decode(code.output) == _serde.decode(recorded.output))
    if isinstance(code, RunFailed) and isinstance(recorded, RunFailed):
        ours, theirs = code.error, recorded.error
        # Older logs name a step's (or child's) failure the body let through by its wrapper.
        wrapped = theirs.name in ("StepFailedError", "WorkflowFailedError")
        return ours.message == theirs.message and (ours.name == theirs.name or wrapped)
    return False


class _Replay:
    def __init__(self, definition: WorkflowDefinition, events: list[AnyEvent], label: str) -> None:
        self.definition = definition
        self.events = events
        self.label = label
        self.rows: list[tuple[int, str, str]] = []
        self.owed: list[AnyEvent] = []
        self.instance: WorkflowInstance | None = None

    def diverged(self, event: AnyEvent, current: str, cause: str | None) -> ReplayDivergenceError:
        recorded = _describe(event)
        if not self.rows or self.rows[-1][0] != event.seq:
            self.rows.append((event.seq, recorded, current))
        divergence = Divergence(event.seq, recorded, current, list(self.rows))
        message = (
            f"Replay of {self.label} against the current code diverges at event seq "
            f"{event.seq}:\n{divergence.table()}\n"
        )
        if cause:
            message += cause
        else:
            message += (
                f"  recorded: {recorded}\n  current:  {current}\n"
                "The code computes another result from the same history: its logic changed, or "
                "it depends on something that is not replayed."
            )
        return ReplayDivergenceError(message, divergence, cause)

    def row(self, event: AnyEvent) -> None:
        if event.type not in _CODE_EVENTS and not isinstance(event, RunFailed):
            return
        current = ""
        for command in self.owed:
            if command.type in _CODE_EVENTS or isinstance(command, RunFailed):
                current = _describe(command)
                if command.correlation_id == event.correlation_id:
                    break
        if isinstance(event, HookConflict):
            current = current.replace(" (refused as a conflict)", "")
        self.rows.append((event.seq, _describe(event), current))

    def run(self) -> ReplayResult:
        first = self.events[0]
        if not isinstance(first, RunCreated):
            raise InvalidEventError(
                f"{self.label} does not start with run_created (it starts with {first.type}): "
                "export the whole log"
            )
        if first.workflow_name != self.definition.name:
            raise ValueError(
                f"{self.label} is a run of workflow {first.workflow_name!r}, not "
                f"{self.definition.name!r}: replay it against that workflow"
            )
        view = WorkflowRun(
            run_id=first.run_id,
            workflow_name=first.workflow_name,
            status=RunStatus.RUNNING,
            input=NULL,
            created_at=first.created_at,
            updated_at=self.events[-1].created_at,
            last_seq=self.events[-1].seq,
            # As a world's view: the markers in the log (events are fed one at a time).
            patches=list(dict.fromkeys(e.name for e in self.events if isinstance(e, PatchMarked))),
        )
        instance = WorkflowInstance(self.definition, view, registry=Registry([self.definition]))
        self.instance = instance
        progress: Progress | None = None
        try:
            for event in self.events:
                if isinstance(event, (RunCompleted, RunFailed)) and not (
                    isinstance(event, RunFailed) and event.error.code == "nondeterminism"
                ):
                    self.check_end(event)
                self.row(event)
                progress = instance.feed([event])
                self.owed = list(progress.commands)
                error = instance.error
                if isinstance(error, NondeterminismError):
                    current = self.rows[-1][2] if self.rows else ""
                    raise self.diverged(event, current or "(see below)", str(error))
        finally:
            instance.close()
        assert progress is not None
        output = None
        status = _status(self.events)
        if status is RunStatus.COMPLETED:
            end = next(e for e in self.events if isinstance(e, RunCompleted))
            output = _serde.decode(end.output)
        return ReplayResult(
            run_id=first.run_id,
            workflow_name=first.workflow_name,
            events=len(self.events),
            status=status,
            finished=progress.finished,
            output=output,
            blocked_on=list(progress.blocked_on),
            commands=list(progress.commands),
        )

    def check_end(self, recorded: RunCompleted | RunFailed) -> None:
        """Before the recorded end is fed: the code must have ended the same way."""
        ends = [c for c in self.owed if isinstance(c, (RunCompleted, RunFailed))]
        if not ends:
            return  # the code has not ended: feeding the end raises the engine's own error
        if not _same_end(ends[0], recorded):
            self.row(recorded)
            raise self.diverged(recorded, _describe(ends[0]), None)


def replay(history: History, workflow: Any) -> ReplayResult:
    """Replay a recorded ``history`` against ``workflow`` as the code stands now.

    Args:
        history: The run's events (``await fetch_history(world, run_id)``), or the path of a
            JSONL file written by :func:`export_history`.
        workflow: The ``@workflow`` function the history is a run of.

    Returns:
        Where the run stands after the replay (:class:`ReplayResult`).

    Raises:
        ReplayDivergenceError: The code does not do what the history recorded (another step,
            another input, another order, another result); the message shows the first
            divergence side by side. It is a :class:`~worldflow.NondeterminismError`.
        ValueError: The history is of another workflow.

    Example::

        def test_v2_still_replays_production_runs():
            for path in Path("tests/histories").glob("checkout-*.jsonl"):
                replay(path, checkout)
    """
    definition = _definition(workflow)
    if isinstance(history, (str, os.PathLike)):
        label = f"history {os.fspath(history)}"
        events = load_history(history)
    else:
        events = list(history)
        label = "the history"
    if not events:
        raise ValueError(f"{label} is empty: nothing to replay")
    label = f"{label} of run {events[0].run_id} (workflow {definition.name!r})"
    return _Replay(definition, events, label).run()
