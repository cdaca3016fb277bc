"""The World conformance suite: run it against any world to check it keeps the contract.

It needs the dev extras (pytest, anyio's pytest plugin, hypothesis). Subclass
:class:`WorldConformance` in a test module and give it a ``world`` fixture that yields a
**fresh, empty** world for each test and closes it afterwards::

    # tests/test_my_world_conformance.py
    from collections.abc import AsyncIterator

    import pytest
    from worldflow.worlds import World
    from worldflow.worlds.testing import WorldConformance

    from mypackage import MyWorld


    class TestMyWorld(WorldConformance):
        @pytest.fixture
        async def world(self, tmp_path) -> AsyncIterator[World]:
            world = await MyWorld.open(tmp_path)
            yield world
            await world.aclose()

The suite covers every rule of the ``World`` protocol: creation conflicts, the terminal-run
rules, first completion wins, a child's outcome only as the child recorded it (once), waits
and hooks (token uniqueness, release at the end of a run),
dense ``seq`` under concurrent appends, atomic batches, malformed events, not-found errors on
every read, every event field checked before it is stored (type, size, the id rule),
pagination without gaps or repeats, the ``list_runs`` filters, purge,
notifications, the queue (idempotency, delays, leases that expire, nack, extend) and streams
with a live tail, the catalog, and run ownership (engines, heartbeats and expiry, fencing of
owner-only events, takeover of orphans, queue messages handed only to engines that serve
them), and flow-control permits (limits shared by engines, leases that lapse with their
engine or run, the line by priority, rate periods). The parts are also available alone
(:class:`LogConformance`, ...).

:func:`run_world_state_machine` drives a world with random valid and invalid appends and purges
(a hypothesis state machine, :class:`WorldStateMachine`) and compares every answer and view
with a small model of the rules. Give it a :data:`WorldFactory`::

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def my_world(path):
        world = await MyWorld.open(path)
        try:
            yield world
        finally:
            await world.aclose()

    def test_my_world_state_machine() -> None:
        run_world_state_machine(my_world)   # WORLDFLOW_SLOW=1 for the long budget
"""

from __future__ import annotations

import sys

import pytest

# The suite's asserts live in these modules: let pytest explain their failures. (One imported
# already cannot be rewritten; skip it rather than have pytest warn.)
_SUITE_MODULES = (
    "worldflow.worlds.testing._base",
    "worldflow.worlds.testing._children",
    "worldflow.worlds.testing._hooks_waits",
    "worldflow.worlds.testing._log",
    "worldflow.worlds.testing._ownership",
    "worldflow.worlds.testing._permits",
    "worldflow.worlds.testing._precondition",
    "worldflow.worlds.testing._queue",
    "worldflow.worlds.testing._reads",
    "worldflow.worlds.testing._stateful",
    "worldflow.worlds.testing._validation",
)
pytest.register_assert_rewrite(*(m for m in _SUITE_MODULES if m not in sys.modules))

from worldflow.worlds.testing._base import WorldFactory  # noqa: E402
from worldflow.worlds.testing._children import ChildOutcomeConformance  # noqa: E402
from worldflow.worlds.testing._hooks_waits import HookWaitConformance  # noqa: E402
from worldflow.worlds.testing._log import LogConformance  # noqa: E402
from worldflow.worlds.testing._ownership import (  # noqa: E402
    CatalogConformance,
    OwnershipConformance,
)
from worldflow.worlds.testing._permits import FlowControlConformance  # noqa: E402
from worldflow.worlds.testing._precondition import PreconditionConformance  # noqa: E402
from worldflow.worlds.testing._queue import QueueConformance, StreamConformance  # noqa: E402
from worldflow.worlds.testing._reads import ReadConformance  # noqa: E402
from worldflow.worlds.testing._stateful import (  # noqa: E402
    WorldStateMachine,
    run_world_state_machine,
    state_machine_settings,
)
from worldflow.worlds.testing._validation import ValidationConformance  # noqa: E402

__all__ = [
    "CatalogConformance",
    "ChildOutcomeConformance",
    "FlowControlConformance",
    "HookWaitConformance",
    "LogConformance",
    "OwnershipConformance",
    "PreconditionConformance",
    "QueueConformance",
    "ReadConformance",
    "StreamConformance",
    "ValidationConformance",
    "WorldConformance",
    "WorldFactory",
    "WorldStateMachine",
    "run_world_state_machine",
    "state_machine_settings",
]


class WorldConformance(
    LogConformance,
    ChildOutcomeConformance,
    HookWaitConformance,
    ReadConformance,
    QueueConformance,
    StreamConformance,
    CatalogConformance,
    OwnershipConformance,
    FlowControlConformance,
    ValidationConformance,
    PreconditionConformance,
):
    """Every conformance test; subclass it and provide a ``world`` fixture (see the module)."""
