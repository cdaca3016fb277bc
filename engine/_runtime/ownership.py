"""The engine's side of run ownership: who it is on the world, and the fence of each run.

The world decides who owns a run (``Ownership`` role); this keeps what the engine last
learned of it: its engine id (fresh at every registration) and, per run it drives, the
``owner_epoch`` to put in its appends' :class:`~worldflow.worlds.Fence`. An engine drives a
run only while the run is unowned or its own; a refused append (another engine took the
run over) makes the driver drop the run, without retrying.
"""

from __future__ import annotations

from worldflow.worlds import Fence, WorkflowRun

__all__ = ["RunOwner"]


class RunOwner:
    """This engine's id and the epochs of the runs it drives."""

    __slots__ = ("_fences", "_new", "engine_id")

    def __init__(self) -> None:
        self.engine_id: str | None = None
        # Made once per epoch and reused by every append (the hot path), not per append.
        self._fences: dict[str, Fence] = {}
        self._new: Fence | None = None

    def reset(self, engine_id: str | None) -> None:
        """A new registration (or none): everything learned before is void."""
        self.engine_id = engine_id
        self._fences.clear()
        self._new = None if engine_id is None else Fence(engine_id=engine_id, epoch=0)

    def fence(self, run_id: str) -> Fence | None:
        """The fence for an append to ``run_id`` (``None`` before the engine registered)."""
        return self._fences.get(run_id, self._new)

    def saw(self, run: WorkflowRun) -> bool:
        """Note a view of ``run``; return whether this engine may drive it (it is unowned,
        to be claimed by the next owner-only append, or this engine's)."""
        owner = run.owner_id
        engine_id = self.engine_id
        if owner is None or owner == engine_id:
            fences = self._fences
            known = fences.get(run.run_id)
            if engine_id is not None and (known is None or known.epoch != run.owner_epoch):
                fences[run.run_id] = Fence(engine_id=engine_id, epoch=run.owner_epoch)
            return True
        self._fences.pop(run.run_id, None)
        return False

    def drives(self, run: WorkflowRun) -> bool:
        """Whether ``run`` is this engine's to drive (unowned, or owned by it)."""
        return run.owner_id is None or run.owner_id == self.engine_id

    def runs(self) -> list[str]:
        """The runs this engine has a fence for (it drives them, or was about to)."""
        return list(self._fences)

    def forget(self, run_id: str) -> None:
        """The run ended here, or was lost to another engine."""
        self._fences.pop(run_id, None)
