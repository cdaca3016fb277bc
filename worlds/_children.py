"""The rule that a parent is told only what its child's own log recorded (``child_ended``).

``child_ended`` is appended to the parent by whichever engine saw the child end, so it is an
event anyone may append (not fenced by the parent's owner). What makes it unforgeable is
this cross-run check, which every world's rules apply to a new ``child_ended``: the named
run exists, is a child of the run told (its ``parent_run_id``, as its own ``run_created``
set it; the hook the parent's owner created names it by its token), has ended, and ended
with exactly the outcome carried (:func:`~worldflow.worlds.child_outcome` of its view:
the output byte for byte, the error's name, message and code, or the cancel reason). A
child's end is written only by its owner and never changes, so a world may read it from
what it committed or read earlier, outside the parent's transaction.
"""

from __future__ import annotations

from worldflow.errors import InvalidEventError, RunNotTerminalError
from worldflow.worlds._events import ChildEnded
from worldflow.worlds._records import TERMINAL_RUN_STATUSES, WorkflowRun, child_outcome

__all__ = ["check_child_outcome"]


def check_child_outcome(child: WorkflowRun | None, ev: ChildEnded, run: WorkflowRun) -> None:
    """Refuse ``ev`` (a ``child_ended`` for ``run``) unless it reports the recorded end of
    ``child``, the stored view of the run it names (``None``: no such run).

    Raises:
        InvalidEventError: the named run does not exist or is not a child of ``run``, or
            the outcome carried is not the one it ended with.
        RunNotTerminalError: the child has not ended.
    """
    child_id = ev.child_run_id
    if child is None or child.parent_run_id != run.run_id:
        whose = (
            "there is no such run" if child is None else f"its parent is {child.parent_run_id!r}"
        )
        raise InvalidEventError(
            f"child_ended names run {child_id!r}, which is not a child of run {run.run_id!r}: "
            f"{whose}"
        )
    if child.status not in TERMINAL_RUN_STATUSES:
        raise RunNotTerminalError(
            f"child run {child_id!r} of run {run.run_id!r} is {child.status.value}: it has not "
            "ended, so there is no outcome to report"
        )
    if ev.outcome != child_outcome(child):
        raise InvalidEventError(
            f"child_ended carries an outcome child run {child_id!r} did not end with (it is "
            f"{child.status.value}): only the outcome its log recorded can be reported"
        )
