"""The memory world's catalog (the ``Catalog`` role): published entries, by name."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from worldflow.errors import InvalidEventError, WorkflowNotRegisteredError
from worldflow.worlds._memory.ownership import Owners
from worldflow.worlds._records import WorkflowInfo

__all__ = ["Entries"]


class Entries:
    """Workflow entries by name; reads fill in the live engines that serve each."""

    def __init__(self, owners: Owners) -> None:
        self._owners = owners
        self.entries: dict[str, WorkflowInfo] = {}

    def publish(self, workflows: Sequence[WorkflowInfo]) -> list[WorkflowInfo]:
        """Store entries (last publish of a name wins); returns them as stored."""
        stored: list[WorkflowInfo] = []
        for entry in workflows:
            if not isinstance(entry, WorkflowInfo) or not entry.name:
                raise InvalidEventError(
                    f"publish_workflows takes WorkflowInfo entries with a name, got {entry!r}"
                )
            stored.append(msgspec.structs.replace(entry, engines=()))
        for entry in stored:
            self.entries[entry.name] = entry
        return stored

    def _live(self, entry: WorkflowInfo) -> WorkflowInfo:
        return msgspec.structs.replace(entry, engines=self._owners.serving(entry.name))

    def list(self) -> list[WorkflowInfo]:
        """Every entry, by name, with its live engines."""
        return [self._live(self.entries[name]) for name in sorted(self.entries)]

    def get(self, name: str) -> WorkflowInfo:
        """One entry with its live engines."""
        entry = self.entries.get(name)
        if entry is None:
            raise WorkflowNotRegisteredError(
                f"no engine on this world has published a workflow named {name!r}"
            )
        return self._live(entry)
