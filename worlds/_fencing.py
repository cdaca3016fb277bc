"""The ownership rules of an append (fencing), shared by every world.

One pure function, :func:`check_fence`: given the run's view before a batch, the batch, the
appender's :class:`Fence` and a way to ask whether an engine is live, it refuses the batch
(``RunOwnedElsewhereError`` / ``OwnershipLostError``) or says which owner the run gets. The
rules are listed in ``worldflow.worlds._protocol``'s docstring; a world calls this before it
stores anything, so a refused batch leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from worldflow.errors import (
    InvalidEventError,
    OwnershipLostError,
    RunOwnedElsewhereError,
    SeqConflictError,
)
from worldflow.worlds._events import AnyEvent
from worldflow.worlds._protocol import OWNER_ONLY_EVENTS
from worldflow.worlds._records import Fence, WorkflowRun

__all__ = ["Claim", "check_expected_seq", "check_fence"]

Claim = tuple[str, int]
"""The ``(owner_id, owner_epoch)`` a run gets from a batch that claims it."""


def check_fence(
    run: WorkflowRun | None,
    events: Sequence[AnyEvent],
    fence: Fence | None,
    is_live: Callable[[str], bool],
) -> Claim | None:
    """Apply the ownership rules to a batch for ``run`` (``None``: the batch creates it).

    Returns the owner the run gets when the batch claims it, ``None`` when ownership does not
    change. Raises when the batch must be refused. The owner's own batches and unfenced
    batches on unowned runs (the usual single-engine paths) return at the first test.
    """
    if run is None:
        if fence is None:
            return None
        if fence.epoch != 0:
            raise RunOwnedElsewhereError(
                f"a batch creating a run carries epoch {fence.epoch}; a new run's epoch is 0"
            )
        _check_live(fence, is_live)
        return fence.engine_id, 1
    owner = run.owner_id
    if fence is None:
        if owner is None:
            return None
    elif owner == fence.engine_id and run.owner_epoch == fence.epoch:
        return None
    owner_only = OWNER_ONLY_EVENTS
    if not any(type(event) in owner_only for event in events):
        return None  # external events and step results: anyone may append them
    if owner is not None or fence is None:
        who = "an unfenced append" if fence is None else f"engine {fence.engine_id!r}"
        seen = "" if fence is None else f" (it last saw epoch {fence.epoch})"
        raise RunOwnedElsewhereError(
            f"run {run.run_id!r} is owned by engine {owner!r} at epoch {run.owner_epoch}; "
            f"{who}{seen} may not append its decisions: stop driving the run",
            owner_id=owner,
            owner_epoch=run.owner_epoch,
        )
    if fence.epoch != run.owner_epoch:
        raise RunOwnedElsewhereError(
            f"run {run.run_id!r} is at epoch {run.owner_epoch}, engine {fence.engine_id!r} "
            f"last saw epoch {fence.epoch}: read the run again before claiming it",
            owner_id=None,
            owner_epoch=run.owner_epoch,
        )
    _check_live(fence, is_live)
    return fence.engine_id, run.owner_epoch + 1


def _check_live(fence: Fence, is_live: Callable[[str], bool]) -> None:
    if not is_live(fence.engine_id):
        raise OwnershipLostError(
            f"engine {fence.engine_id!r} is not live (unknown, expired or deregistered); "
            "register again before driving runs"
        )


def check_expected_seq(run_id: str, run: WorkflowRun | None, expected_seq: int | None) -> None:
    """The optimistic precondition of an append: the run's log is at ``expected_seq``.

    ``None`` checks nothing. ``0`` means "no events yet" (the batch creates the run). Raises
    :class:`~worldflow.errors.SeqConflictError` when the log has moved (nothing of the batch
    is stored) and :class:`~worldflow.errors.InvalidEventError` for a value that is not a
    seq. A world calls this after :func:`check_fence` and before any other rule.
    """
    if expected_seq is None:
        return
    if type(expected_seq) is not int or expected_seq < 0:
        raise InvalidEventError(
            f"`expected_seq` must be an int >= 0 (the run's last seq), not {expected_seq!r}"
        )
    last = 0 if run is None else run.last_seq
    if last != expected_seq:
        where = "does not exist" if run is None else f"is at seq {last}"
        raise SeqConflictError(
            f"run {run_id!r} {where}, the batch expected seq "
            f"{expected_seq}: read the events after it and decide again",
            last_seq=last,
        )
