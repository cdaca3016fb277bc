"""Child workflows: the contract between a parent body and the runtime.

``await other_workflow(x)`` inside a body does two durable things, in this order:

1. creates a hook with the reserved token ``worldflow:child:{child_run_id}`` (so the child's
   outcome has somewhere to go even if the child finishes at once; user code cannot create
   or resume tokens starting with ``worldflow:``);
2. calls the builtin step :data:`START_CHILD_STEP` with the input :class:`StartChildInput`
   (``{"workflow_name": ..., "run_id": child_run_id, "input": {parameter: value}}``); the
   runtime's step starts the child run with ``parent_run_id`` set and that run id (a retry
   finds it already started).

The child's run id is ``{parent_run_id}-{step correlation id}``, so it is known before the step
runs and the same on every replay. When the child reaches a terminal state the runtime appends
``child_ended`` to the parent with :func:`~worldflow.worlds.child_outcome` of the child's run
(a :data:`~worldflow.worlds.ChildOutcome`; every world checks that it is the child's recorded
end); the parent returns the output, or raises
:class:`~worldflow.WorkflowFailedError` / :class:`~worldflow.WorkflowCancelledError`. Logs
written before ``child_ended`` existed carry the same JSON in a ``hook_received`` payload;
:func:`decode_outcome` reads it.
"""

from __future__ import annotations

import msgspec

from worldflow import _serde
from worldflow.errors import (
    WorkflowCancelledError,
    WorkflowError,
    WorkflowFailedError,
)
from worldflow.worlds import (
    RESERVED_TOKEN_PREFIX,
    ChildCancelled,
    ChildCompleted,
    ChildFailed,
    ChildOutcome,
    Payload,
    child_outcome,
)

__all__ = [
    "CHILD_TOKEN_PREFIX",
    "START_CHILD_STEP",
    "StartChildInput",
    "child_hook_token",
    "child_outcome",
    "child_result",
    "child_run_id",
    "decode_outcome",
]

START_CHILD_STEP = "worldflow.start_child"
"""The builtin step that starts a child run; its input is a :class:`StartChildInput`."""

CHILD_TOKEN_PREFIX = f"{RESERVED_TOKEN_PREFIX}child:"


class StartChildInput(msgspec.Struct, frozen=True, kw_only=True):
    """The input of the :data:`START_CHILD_STEP` step (its bound arguments).

    ``input`` is the child's own input, ``{parameter: value}`` as its workflow encodes it.
    """

    workflow_name: str
    run_id: str
    input: Payload


_encoder = msgspec.json.Encoder()
_outcome_decoder = msgspec.json.Decoder(ChildOutcome)


def start_child_input(workflow_name: str, run_id: str, input: Payload) -> Payload:
    """The encoded step input (the same bytes as the dict this used to be)."""
    return msgspec.Raw(
        _encoder.encode(StartChildInput(workflow_name=workflow_name, run_id=run_id, input=input))
    )


def child_run_id(parent_run_id: str, step_id: str) -> str:
    """The run id of the child started by the step ``step_id`` of ``parent_run_id``."""
    return f"{parent_run_id}-{step_id}"


def child_hook_token(child_run_id: str) -> str:
    """The token of the parent's hook that receives the outcome of ``child_run_id``."""
    return f"{CHILD_TOKEN_PREFIX}{child_run_id}"


def decode_outcome(payload: Payload | ChildOutcome) -> ChildOutcome | None:
    """The outcome a ``child_ended`` carries, or one read from an older log's
    ``hook_received`` payload; ``None`` if the payload is not an outcome."""
    if isinstance(payload, (ChildCompleted, ChildFailed, ChildCancelled)):
        return payload
    try:
        outcome: ChildOutcome = _outcome_decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return outcome


def child_result(workflow_name: str, run_id: str, payload: Payload | ChildOutcome) -> object:
    """What ``await child(...)`` returns (or raises) for the outcome the parent received."""
    outcome = decode_outcome(payload)
    match outcome:
        case ChildCompleted(output=output):
            return _serde.decode(output)
        case ChildFailed(error=error):
            raise WorkflowFailedError(
                f"child workflow {workflow_name!r} (run {run_id}) failed: "
                f"{error.name}: {error.message}",
                run_id=run_id,
                error_name=error.name,
            )
        case ChildCancelled(reason=reason):
            suffix = f": {reason}" if reason else ""
            raise WorkflowCancelledError(
                f"child workflow {workflow_name!r} (run {run_id}) was cancelled{suffix}"
            )
    raise WorkflowError(
        f"child workflow {workflow_name!r} (run {run_id}) sent an outcome this engine cannot "
        f"read: {bytes(payload)[:200]!r}"  # type: ignore[arg-type]
    )
