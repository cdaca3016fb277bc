"""Nondeterminism messages: what the log recorded, what the code asks for now, and why.

A replay that does not match its log fails the run with a :class:`~worldflow.NondeterminismError`
whose message shows both sides at the position where they part, so the user can see which
change to their code did it (the peers' users ask for exactly this).
"""

from __future__ import annotations

from worldflow._replay.durable_ops import iso, snippet
from worldflow.errors import NondeterminismError
from worldflow.worlds import (
    AnyEvent,
    HookConflict,
    HookCreated,
    PatchMarked,
    RunCompleted,
    StateUpdated,
    StepCreated,
    WaitCreated,
)

__all__ = ["CAUSES", "describe_recorded", "divergence"]

CAUSES: dict[str, str] = {
    "renamed": (
        "a step was inserted, removed, renamed or reordered before this point since the run "
        "was recorded (operations are matched by the order the code starts them)."
    ),
    "input": (
        "the step's arguments are computed differently now: the code changed, or they depend "
        "on something that is not replayed (wall-clock time, random numbers, environment, "
        "I/O outside steps). Use worldflow.now(), worldflow.random(), worldflow.uuid4() or a "
        "step for such values."
    ),
    "kind": (
        "an operation was replaced by another kind (for example a step by a sleep or a "
        "hook), or operations were inserted or removed before this point."
    ),
    "missing": (
        "the code no longer starts this operation at this point: a step, sleep, hook or wait "
        "was removed or moved later, or the code took another branch than when the run was "
        "recorded."
    ),
    "changed": (
        "the operation's arguments changed (a hook token, an event name) since the run was "
        "recorded, or they depend on something that is not replayed."
    ),
    "state": (
        "set_state() is called at other points or with other values than when the run was recorded."
    ),
    "returned": (
        "the recorded run returned at this point and the code now does not: it waits for "
        "something else, or an operation was added before the end."
    ),
    "corrupt": (
        "the log has events for an operation this run never started: the log was edited, or "
        "belongs to another workflow."
    ),
}

_ADVICE = (
    "The run is stalled rather than continued on a history it does not match: deploy code "
    "that replays it (roll back the change) and it goes on when an engine starts or "
    "unstall() is called; fail() ends it for good. To change a workflow that has runs in "
    'flight, put the change behind `if patched("<name>"):` (runs recorded before it take '
    "the old branch, this one included) or deploy it under a new workflow name."
)


def describe_recorded(event: AnyEvent) -> str:
    """What a recorded event says the code did, in the words ``Op.describe`` uses."""
    match event:
        case StepCreated():
            return f"step {event.step_name!r} with input {snippet(event.input)}"
        case WaitCreated(event_name=None):
            return f"sleep until {iso(event.resume_at)}"
        case WaitCreated():
            limit = "" if event.resume_at is None else f" (timeout at {iso(event.resume_at)})"
            return f"wait for event {event.event_name!r}{limit}"
        case HookCreated():
            kind = "webhook" if event.is_webhook else "hook"
            return f"{kind} with token {event.token!r}"
        case HookConflict():
            return f"hook with token {event.token!r} (refused as a conflict)"
        case StateUpdated():
            return f"set_state({snippet(event.state)})"
        case PatchMarked():
            return f"patched({event.name!r}): the new branch"
        case RunCompleted():
            return f"the workflow returned {snippet(event.output)}"
        case _:
            corr = f" for {event.correlation_id}" if event.correlation_id else ""
            return f"{event.type}{corr}"


def divergence(
    *,
    run_id: str,
    workflow_name: str,
    event: AnyEvent,
    number: int | None,
    current: str,
    cause: str,
) -> NondeterminismError:
    """Build the error for a replay that parts from its log at ``event``."""
    position = f"event seq {event.seq}"
    if number is not None:
        position += f", operation #{number}"
    recorded = describe_recorded(event)
    message = (
        f"Nondeterminism in run {run_id} (workflow {workflow_name!r}) at {position}:\n"
        f"  recorded: {recorded}\n"
        f"  current:  {current}\n"
        f"Likely cause: {CAUSES[cause]}\n"
        f"{_ADVICE}"
    )
    return NondeterminismError(
        message, run_id=run_id, position=event.seq, recorded=recorded, current=current
    )
