"""The oracles of the replay properties: prefix replays, duplicate results, program mutations.

They take a log and a workflow definition, never a simulation, so they check logs written by
the real engine on a world as well as the simulated ones.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from tests.properties.programs import (
    Child,
    Hook,
    HookTimeout,
    HookVsSleep,
    Node,
    Program,
    Step,
)
from worldflow import NondeterminismError, _serde
from worldflow._registry import Registry, WorkflowDefinition
from worldflow._replay.child_contract import START_CHILD_STEP
from worldflow._replay.instance import Progress, WorkflowInstance
from worldflow.worlds import (
    NULL,
    AnyEvent,
    ErrorInfo,
    HookConflict,
    HookCreated,
    PatchMarked,
    RunCompleted,
    RunFailed,
    RunStatus,
    StepCompleted,
    StepCreated,
    StepFailed,
    WorkflowRun,
    encode_event,
)
from worldflow.worlds._events import stamp

__all__ = [
    "check_mutation",
    "check_no_duplicate_results",
    "check_prefixes",
    "mutations",
    "progress_bytes",
    "replay",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NODE = re.compile(r"^n(\d+)")


def progress_bytes(progress: Progress) -> bytes:
    """A progress as comparable bytes."""
    return msgspec.json.encode(progress)


def _command_bytes(event: AnyEvent, stored: AnyEvent | None = None) -> bytes:
    if isinstance(event, HookCreated) and isinstance(stored, HookConflict):
        # The world stores a refused hook_created as hook_conflict: the same command.
        event = stored
    return encode_event(stamp(event, seq=0, event_id="", created_at=_EPOCH))


def _view(definition: WorkflowDefinition, log: Sequence[AnyEvent]) -> WorkflowRun:
    return WorkflowRun(
        run_id=log[0].run_id,
        workflow_name=definition.name,
        status=RunStatus.RUNNING,
        input=NULL,
        created_at=log[0].created_at,
        updated_at=log[-1].created_at,
        last_seq=len(log),
        patches=list(dict.fromkeys(e.name for e in log if isinstance(e, PatchMarked))),
    )


def replay(
    definition: WorkflowDefinition, log: Sequence[AnyEvent], *, registry: Registry | None = None
) -> tuple[WorkflowInstance, Progress]:
    """A fresh instance fed the whole ``log`` (close the instance when done)."""
    instance = WorkflowInstance(
        definition, _view(definition, log), registry=registry or Registry([definition])
    )
    return instance, instance.feed(log)


def _end_bytes(event: AnyEvent) -> bytes:
    if isinstance(event, RunFailed):
        # Tracebacks name lines of this process's code; what failed and why must match.
        info = event.error
        event = RunFailed(
            run_id=event.run_id,
            error=ErrorInfo(name=info.name, message=info.message, code=info.code),
        )
    return encode_event(stamp(event, seq=0, event_id="", created_at=_EPOCH))


def check_prefixes(
    definition: WorkflowDefinition,
    log: Sequence[AnyEvent],
    live: Progress,
    *,
    strict_commands: bool = True,
    prefixes: Sequence[int] | None = None,
) -> int:
    """Property 1: a run rebuilt from any prefix of ``log``, then fed the rest, ends exactly in
    the ``live`` progress, and computes the result the log recorded.

    The result is checked by feeding everything before the recorded ``run_completed`` /
    ``run_failed``: the rebuilt run must owe exactly that event (once the log has it, the
    instance takes the recorded outcome as its own and compares nothing). With
    ``strict_commands`` (logs written by a runtime that appends an instance's commands as soon
    as it has them, like the simulation), the commands owed after each prefix must also be the
    very next events of the log. Returns the number of prefixes checked.
    """
    registry = Registry([definition])
    expected = progress_bytes(live)
    end = next(
        (
            i
            for i, e in enumerate(log)
            if isinstance(e, RunCompleted)
            or (isinstance(e, RunFailed) and e.error.code != "nondeterminism")
        ),
        None,
    )
    checked = 0
    for k in range(len(log) + 1) if prefixes is None else prefixes:
        instance = WorkflowInstance(definition, _view(definition, log), registry=registry)
        try:
            owed = instance.feed(log[:k])
            if strict_commands and owed.commands:
                after = log[k : k + len(owed.commands)]
                recorded = [_command_bytes(e) for e in after]
                current = [_command_bytes(c, s) for c, s in zip(owed.commands, after, strict=False)]
                assert current == recorded, (
                    f"after the first {k} events the replay owes other commands than the live "
                    f"run appended:\n  replay: {[c.decode() for c in current]}\n"
                    f"  log:    {[r.decode() for r in recorded]}"
                )
            rest = log[k:]
            if end is not None and k <= end:
                owed = instance.feed(log[k:end])
                ends = [
                    _end_bytes(c) for c in owed.commands if isinstance(c, (RunCompleted, RunFailed))
                ]
                assert ends == [_end_bytes(log[end])], (
                    f"replay from the first {k} events computes another outcome than the live "
                    f"run recorded:\n  live:   {_end_bytes(log[end]).decode()}\n"
                    f"  replay: {[e.decode() for e in ends]}"
                )
                rest = log[end:]
            final = instance.feed(rest)
            assert progress_bytes(final) == expected, (
                f"replay from the first {k} events, then the rest, differs from the live run:\n"
                f"  live:   {live}\n  replay: {final}"
            )
        finally:
            instance.close()
        checked += 1
    return checked


def check_no_duplicate_results(log: Sequence[AnyEvent]) -> None:
    """Property 3 on a log: each step is created once and has at most one recorded result."""
    created = Counter(e.correlation_id for e in log if isinstance(e, StepCreated))
    results = Counter(e.correlation_id for e in log if isinstance(e, (StepCompleted, StepFailed)))
    twice = {c: n for c, n in created.items() if n > 1}
    assert not twice, f"steps created more than once: {twice}"
    twice = {c: n for c, n in results.items() if n > 1}
    assert not twice, f"step results recorded more than once: {twice}"
    ends = [e for e in log if isinstance(e, (RunCompleted, RunFailed))]
    assert len(ends) <= 1, f"the run ended more than once: {ends}"


# -- property 4 --------------------------------------------------------------------------------


def _recorded_nodes(log: Sequence[AnyEvent]) -> set[int]:
    """Program nodes whose operation the log recorded (a step by its key, a hook by its token,
    a child by its start step)."""
    out: set[int] = set()
    for event in log:
        key = None
        if isinstance(event, StepCreated):
            data = _serde.decode(event.input)
            key = data["input"]["key"] if event.step_name == START_CHILD_STEP else data["key"]
        elif isinstance(event, (HookCreated, HookConflict)) and event.token.startswith("tok-"):
            key = event.token.removeprefix("tok-")
        if key is not None and (match := _NODE.match(key)):
            out.add(int(match.group(1)))
    return out


def mutations(program: Program, log: Sequence[AnyEvent]) -> list[tuple[str, Program]]:
    """Changes to ``program`` at operations the log recorded: each must be caught on replay.

    A step renamed or given another input, a step inserted before a recorded step, hook or
    child, a child given other steps.
    """
    recorded = _recorded_nodes(log)
    out: list[tuple[str, Program]] = []

    def change(what: str, node_id: int, *nodes: Node) -> None:
        out.append((f"{what} n{node_id}", program.replace(node_id, lambda _: nodes)))

    for node in program.nodes():
        if node.node not in recorded:
            continue
        if isinstance(node, Step):
            change("rename step", node.node, dataclasses.replace(node, name="renamed"))
            change("change the input of", node.node, dataclasses.replace(node, arg=node.arg + 1))
        if isinstance(node, Child):
            calls = (*node.calls, ("a", 9))
            change("change the child of", node.node, dataclasses.replace(node, calls=calls))
        if isinstance(node, (Step, Child, Hook, HookVsSleep, HookTimeout)):
            change("insert a step before", node.node, Step(node=10_000, name="inserted"), node)
    return out


def check_mutation(
    changed: WorkflowDefinition, log: Sequence[AnyEvent], what: str
) -> NondeterminismError:
    """Property 4: replaying ``log`` against ``changed`` code fails the run with a
    ``NondeterminismError``, whether fed whole or one event at a time, and never completes it."""
    registry = Registry([changed])
    errors: list[NondeterminismError] = []
    for whole in (True, False):
        instance = WorkflowInstance(changed, _view(changed, log), registry=registry)
        try:
            batches = [list(log)] if whole else [[e] for e in log]
            progress = instance.progress()
            for batch in batches:
                progress = instance.feed(batch)
                completed = [c for c in progress.commands if isinstance(c, RunCompleted)]
                assert not completed, (
                    f"{what}: the changed code completed the run from the old log: {completed}"
                )
            error = instance.error
            assert isinstance(error, NondeterminismError), (
                f"{what}: replaying the old log against the changed code was not caught as "
                f"nondeterminism (error: {error!r}, progress: {progress})"
            )
            failed = [c for c in progress.commands if isinstance(c, RunFailed)]
            assert all(f.error.code == "nondeterminism" for f in failed), failed
            errors.append(error)
        finally:
            instance.close()
    assert str(errors[0]) == str(errors[1]), (
        f"{what}: the error depends on how the log is fed:\n{errors[0]}\n---\n{errors[1]}"
    )
    return errors[0]
