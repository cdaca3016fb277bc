"""The children a batch's ``child_ended`` events report on, for the rules' check.

The shared rules (``worldflow.worlds._children``) check a ``child_ended`` against the view of
the child it names, which is another run than the one appended to. The appender puts those
views into the wave's :class:`LogState` before it applies the rules: from its cache when this
process committed or read the child's end (the usual case: the engine that saw the child end
tells the parent, through the same world), else in one query for the whole wave. A child's
end is written once and never changes, so reading it outside the parent's compare-and-set
statement is sound: what the rules see of an ended child is what every later read sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from worldflow.worlds._events import AnyEvent, ChildEnded
from worldflow.worlds._ids import id_problem
from worldflow.worlds._memory.log import LogState, RunState
from worldflow.worlds._postgres import codec
from worldflow.worlds._records import WorkflowRun

__all__ = ["CHILDREN_SQL", "read_children"]

CHILDREN_SQL: Final = (
    f"SELECT run_id, {codec.RUN_COLUMNS} FROM {{s}}.runs WHERE run_id = ANY($1::text[])"
)
"""The views of the named runs (``{s}``: the schema)."""


async def read_children(
    conn: Any,
    sql: str,
    events: Iterable[AnyEvent],
    ended: Callable[[str], WorkflowRun | None],
    logstate: LogState,
) -> bool:
    """Put into ``logstate`` the runs the ``child_ended`` among ``events`` name: ``ended``
    (a known end) or a read with ``sql``. Returns whether it queried the database."""
    wanted: list[str] = []
    for ev in events:
        if type(ev) is not ChildEnded:
            continue
        child_id = ev.child_run_id
        if type(child_id) is not str or child_id in logstate.runs or child_id in wanted:
            continue  # (an id that is not a string: the rules refuse the event in order)
        run = ended(child_id)
        if run is not None:
            logstate.runs[child_id] = RunState(run=run, index=0)
        elif id_problem(child_id) is None:
            wanted.append(child_id)
    if not wanted:
        return False
    for row in await conn.fetch(sql, wanted):
        logstate.runs[row["run_id"]] = RunState(run=codec.decode_run(row), index=0)
    return True
