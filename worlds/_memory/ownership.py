"""The memory world's engines and run owners (the ``Ownership`` role, in this process).

Engines are rows with a heartbeat deadline on the world's clock, so a test that advances a
virtual clock expires them. Owners are kept on the run views (``owner_id`` /
``owner_epoch``); this table indexes them the other way round (engine → runs it owns, and
the runs nobody owns) so a sweep or a clean exit touches only the runs concerned.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

import msgspec

from worldflow.errors import InvalidEventError, OwnershipLostError
from worldflow.worlds._clock import Clock
from worldflow.worlds._ids import new_id
from worldflow.worlds._memory.log import LogState, RunState
from worldflow.worlds._records import EngineInfo, RunStatus, WorkflowRun

__all__ = ["Owners"]

_CLAIMABLE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.STALLED})


class Owners:
    """Registered engines and an index of who owns which run."""

    def __init__(self, clock: Clock, log: LogState) -> None:
        self._clock = clock
        self._log = log
        self._engines: dict[str, EngineInfo] = {}
        self._owned: dict[str, dict[str, None]] = {}  # engine id -> run ids it owns
        self._unowned: dict[str, None] = {}  # run ids created or released without an owner

    # -- engines -----------------------------------------------------------------------------

    def is_live(self, engine_id: str) -> bool:
        """Whether ``engine_id`` is registered and its heartbeat deadline is ahead."""
        info = self._engines.get(engine_id)
        return info is not None and self._clock.now() < info.expires_at

    def register(self, workflows: Collection[str], ttl: float) -> EngineInfo:
        """A new engine, live for ``ttl`` seconds."""
        if not ttl > 0:
            raise InvalidEventError(f"register_engine: `ttl` must be > 0 seconds, got {ttl}")
        if isinstance(workflows, str) or not all(isinstance(w, str) for w in workflows):
            raise InvalidEventError("register_engine: `workflows` is a collection of names")
        now = self._clock.now()
        info = EngineInfo(
            engine_id=new_id("eng"),
            workflows=tuple(sorted(set(workflows))),
            ttl=ttl,
            registered_at=now,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        self._engines[info.engine_id] = info
        return info

    def heartbeat(self, engine_id: str) -> EngineInfo:
        """Extend a live engine's deadline; a dead one is forgotten and refused."""
        if not self.is_live(engine_id):
            self._engines.pop(engine_id, None)
            raise OwnershipLostError(
                f"engine {engine_id!r} is not live (its ttl passed without a heartbeat, or it "
                "deregistered): its runs may have other owners; register again"
            )
        info = self._engines[engine_id]
        now = self._clock.now()
        info = msgspec.structs.replace(
            info, heartbeat_at=now, expires_at=now + timedelta(seconds=info.ttl)
        )
        self._engines[engine_id] = info
        return info

    def live(self) -> list[EngineInfo]:
        """The live engines, oldest registration first."""
        now = self._clock.now()
        return [info for info in self._engines.values() if now < info.expires_at]

    def serving(self, workflow_name: str) -> tuple[str, ...]:
        """The live engines registered with ``workflow_name``."""
        return tuple(e.engine_id for e in self.live() if workflow_name in e.workflows)

    def _check_caller(self, engine_id: str) -> None:
        if not self.is_live(engine_id):
            raise OwnershipLostError(
                f"engine {engine_id!r} is not live; register again before claiming runs"
            )

    # -- owners ------------------------------------------------------------------------------

    def reindex(self) -> None:
        """Index every stored run by owner (after a world loaded its runs from disk)."""
        self._owned.clear()
        self._unowned.clear()
        for state in self._log.run_order:
            if state is not None and not state.run.status.is_terminal:
                self.created(state.run)

    def created(self, run: WorkflowRun) -> None:
        """A run was just created (owned, or not)."""
        if run.owner_id is None:
            self._unowned[run.run_id] = None
        else:
            self._owned.setdefault(run.owner_id, {})[run.run_id] = None

    def set_owner(self, state: RunState, owner_id: str | None, epoch: int) -> None:
        """Give a stored run a new owner (``None``: release it) and re-index it."""
        run = state.run
        previous = run.owner_id
        if previous is not None:
            owned = self._owned.get(previous)
            if owned is not None:
                owned.pop(run.run_id, None)
                if not owned:
                    del self._owned[previous]
        else:
            self._unowned.pop(run.run_id, None)
        state.run = msgspec.structs.replace(run, owner_id=owner_id, owner_epoch=epoch)
        self.created(state.run)

    def deregister(self, engine_id: str) -> int:
        """Forget the engine and release its non-terminal runs."""
        self._engines.pop(engine_id, None)
        released = 0
        for run_id in list(self._owned.get(engine_id, ())):
            state = self._log.runs.get(run_id)
            if state is None:
                self._owned[engine_id].pop(run_id, None)
                continue
            if state.run.status.is_terminal:
                continue
            self.set_owner(state, None, state.run.owner_epoch)
            released += 1
        return released

    def release(self, engine_id: str, run_ids: Collection[str]) -> int:
        """Release those of ``run_ids`` that ``engine_id`` owns."""
        released = 0
        for run_id in run_ids:
            state = self._log.runs.get(run_id)
            if state is not None and state.run.owner_id == engine_id:
                self.set_owner(state, None, state.run.owner_epoch)
                released += 1
        return released

    def claim_orphans(
        self, engine_id: str, workflows: Collection[str], limit: int
    ) -> list[WorkflowRun]:
        """Take up to ``limit`` orphaned pending/running runs of ``workflows``."""
        self._check_caller(engine_id)
        if limit < 1:
            raise InvalidEventError(f"claim_orphans: `limit` must be at least 1, got {limit}")
        wanted = set(workflows)
        candidates: list[RunState] = []
        runs = self._log.runs
        for run_id in list(self._unowned):
            state = runs.get(run_id)
            if state is None or state.run.status.is_terminal:
                del self._unowned[run_id]  # purged or finished: never an orphan again
            elif state.run.status in _CLAIMABLE and state.run.workflow_name in wanted:
                candidates.append(state)
        for owner in [o for o in self._owned if not self.is_live(o)]:
            for run_id in list(self._owned[owner]):
                state = runs.get(run_id)
                if state is None or state.run.status.is_terminal:
                    del self._owned[owner][run_id]
                elif state.run.status in _CLAIMABLE and state.run.workflow_name in wanted:
                    candidates.append(state)
            if not self._owned[owner]:
                del self._owned[owner]
        candidates.sort(key=lambda s: s.index)
        claimed: list[WorkflowRun] = []
        for state in candidates[:limit]:
            self.set_owner(state, engine_id, state.run.owner_epoch + 1)
            claimed.append(state.run)
        return claimed
