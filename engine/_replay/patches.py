"""Versioning inside one run: which branch of each ``patched(name)`` the run takes.

A patch's branch is decided once per run and name, at the first call: a marker of ``name`` in
the log means new; replaying a log without one means old; running live means new, and the
marker (``patch_marked``) is owed to the log. Later calls (other tasks of a ``gather``, later
iterations) get the same answer, so the answer does not depend on which task gets there first.
"""

from __future__ import annotations

from collections.abc import Iterable

from worldflow._replay.durable_ops import Intent

__all__ = ["Patches"]


class Patches:
    """One run's patch markers and decisions.

    Args:
        recorded: The patches whose marker the run's view already lists.
    """

    __slots__ = ("_decisions", "_owed", "marked")

    def __init__(self, recorded: Iterable[str]) -> None:
        self.marked: set[str] = set(recorded)
        """Patches whose marker is in the log (the view's, and every marker fed since)."""
        self._decisions: dict[str, bool] = {}
        self._owed: dict[str, Intent] = {}

    def decide(self, name: str, *, replaying: bool) -> tuple[bool, bool]:
        """``(new branch?, marker owed?)`` for a ``patched(name)`` call."""
        decided = self._decisions.get(name)
        if decided is not None:
            return decided, False
        decided = name in self.marked or not replaying
        self._decisions[name] = decided
        return decided, decided and name not in self.marked

    def deprecate(self, name: str, *, replaying: bool) -> bool:
        """A ``deprecate_patch(name)`` call: the old branch is gone. Whether the marker is owed
        (running live without one, so code that still says ``patched(name)`` replays the
        run); nothing is checked on replay."""
        if name in self._decisions:
            return False
        self._decisions[name] = True
        return name not in self.marked and not replaying

    def owe(self, name: str, intent: Intent) -> None:
        """The marker of ``name`` is owed to the log as ``intent``."""
        self._owed[name] = intent

    def recorded(self, name: str) -> Intent | None:
        """A ``patch_marked`` of ``name`` was fed: the owed intent it records, if any. Without
        a call of ``patched(name)`` before it (code with that patch removed after
        ``deprecate_patch``), the marker says nothing to the body."""
        return self._owed.pop(name, None)
