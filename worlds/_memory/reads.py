"""The memory world's reads (the ``RunStore`` role): runs, steps, hooks and waits from the
views a batch's commit keeps (:mod:`~worldflow.worlds._memory.log`).

:class:`RunReads` is the part of :class:`~worldflow.worlds.MemoryWorld` (and so of the file
world, which keeps the same views in memory) that answers them. Every read costs the same
whatever the world holds, except ``list_runs`` / ``list_hooks`` / ``list_waits`` with
filters, which walk their table from the cursor on. A cursor is a creation position, so
pages are stable while runs are added.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from enum import Enum
from typing import Protocol, TypeVar

from worldflow.errors import (
    HookNotFoundError,
    InvalidEventError,
    RunNotFoundError,
    StepNotFoundError,
    WorldError,
)
from worldflow.worlds._memory.log import LogState, RunState
from worldflow.worlds._protocol import SortOrder
from worldflow.worlds._read_args import bad_cursor, check_limit, run_statuses
from worldflow.worlds._records import (
    Hook,
    HookStatus,
    Page,
    RunStatus,
    Step,
    Wait,
    WaitStatus,
    WorkflowRun,
)

__all__ = ["RunReads", "cursor_position"]

T = TypeVar("T")


class _HasStatus(Protocol):
    @property
    def status(self) -> Enum: ...


L = TypeVar("L", bound=_HasStatus)


def _hooks(state: RunState) -> tuple[list[str], dict[str, Hook]]:
    return state.hook_order, state.hooks


def _waits(state: RunState) -> tuple[list[str], dict[str, Wait]]:
    return state.wait_order, state.waits


def cursor_position(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise bad_cursor(cursor) from None


def _page(found: Iterable[tuple[int, T]], limit: int) -> Page[T]:
    """The first ``limit`` of ``found`` (position, item) pairs; the cursor is a position."""
    check_limit(limit)
    items: list[T] = []
    last = 0
    for position, item in found:
        if len(items) == limit:
            return Page(items=items, cursor=str(last), has_more=True)
        items.append(item)
        last = position
    return Page(items=items)


class RunReads:
    """The ``RunStore`` reads over a :class:`LogState` (``_log``), and the checks every
    call of a memory world begins with."""

    _log: LogState
    _closed: bool

    def _check_open(self) -> None:
        if self._closed:
            raise WorldError(
                "this MemoryWorld was closed with aclose(); its data is gone, open a new one"
            )

    def _state(self, run_id: str) -> RunState:
        state = self._log.runs.get(run_id)
        if state is None:
            raise RunNotFoundError(f"no run {run_id!r} in this world")
        return state

    # -- RunStore --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> WorkflowRun:
        """The run's view."""
        self._check_open()
        return self._state(run_id).run

    async def list_runs(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        order: SortOrder = "desc",
        limit: int = 100,
        cursor: str | None = None,
        forked_from: str | None = None,
    ) -> Page[WorkflowRun]:
        """Runs matching every filter; the cursor is a creation position, so pages are stable."""
        self._check_open()
        statuses = run_statuses(status)
        wanted = dict(metadata or {})
        table = self._log.run_order
        start = cursor_position(cursor)
        positions: Iterable[int]
        if order == "desc":
            top = len(table) - 1 if start is None else min(start - 1, len(table) - 1)
            positions = range(top, -1, -1)
        elif order == "asc":
            positions = range(0 if start is None else start + 1, len(table))
        else:
            raise InvalidEventError(f"`order` must be 'asc' or 'desc', got {order!r}")

        def found() -> Iterator[tuple[int, WorkflowRun]]:
            for position in positions:
                state = table[position]
                if state is None:
                    continue
                run = state.run
                if (
                    (workflow_name is None or run.workflow_name == workflow_name)
                    and (statuses is None or run.status in statuses)
                    and (resource_id is None or run.resource_id == resource_id)
                    and (forked_from is None or run.forked_from == forked_from)
                    and (created_after is None or run.created_at >= created_after)
                    and (created_before is None or run.created_at < created_before)
                    and all(run.metadata.get(k) == v for k, v in wanted.items())
                ):
                    yield position, run

        return _page(found(), limit)

    async def get_step(self, run_id: str, step_id: str) -> Step:
        """One step of a run."""
        self._check_open()
        step = self._state(run_id).steps.get(step_id)
        if step is None:
            raise StepNotFoundError(f"run {run_id!r} has no step {step_id!r}")
        return step

    async def list_steps(
        self, run_id: str, *, limit: int = 1000, cursor: str | None = None
    ) -> Page[Step]:
        """A run's steps in creation order."""
        self._check_open()
        state = self._state(run_id)
        start = cursor_position(cursor)
        order, steps = state.step_order, state.steps
        first = 0 if start is None else start + 1
        return _page(((i, steps[order[i]]) for i in range(first, len(order))), limit)

    async def get_hook_by_token(self, token: str) -> Hook:
        """The live hook holding ``token``."""
        self._check_open()
        held = self._log.tokens.get(token)
        if held is None:
            raise HookNotFoundError(f"no live hook has the token {token!r}")
        run_id, hook_id = held
        return self._log.runs[run_id].hooks[hook_id]

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Hook]:
        """Hooks of one run or of the world, in creation order."""
        self._check_open()
        wanted = None if status is None else HookStatus(status)
        return self._listed(run_id, _hooks, self._log.hook_order, wanted, limit, cursor)

    async def list_waits(
        self,
        *,
        run_id: str | None = None,
        status: WaitStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Wait]:
        """Waits of one run or of the world, in creation order."""
        self._check_open()
        wanted = None if status is None else WaitStatus(status)
        return self._listed(run_id, _waits, self._log.wait_order, wanted, limit, cursor)

    def _listed(
        self,
        run_id: str | None,
        table: Callable[[RunState], tuple[list[str], dict[str, L]]],
        world_order: list[tuple[str, str] | None],
        wanted: Enum | None,
        limit: int,
        cursor: str | None,
    ) -> Page[L]:
        """Rows (hooks or waits) of one run, or of the world in ``world_order``, in creation
        order, with the status ``wanted`` (``None``: any)."""
        start = cursor_position(cursor)
        first = 0 if start is None else start + 1
        found: Iterator[tuple[int, L]]
        if run_id is not None:
            ids, rows = table(self._state(run_id))
            found = ((i, rows[ids[i]]) for i in range(first, len(ids)))
        else:
            found = self._world_wide(world_order, first, lambda s, i: table(s)[1][i])
        return _page(((i, r) for i, r in found if wanted is None or r.status is wanted), limit)

    def _world_wide(
        self,
        table: list[tuple[str, str] | None],
        first: int,
        view: Callable[[RunState, str], T],
    ) -> Iterator[tuple[int, T]]:
        runs = self._log.runs
        for i in range(first, len(table)):
            entry = table[i]
            if entry is not None:
                yield i, view(runs[entry[0]], entry[1])
