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
rules, first completion wins, waits and hooks (token uniqueness, release at the end of a run),
dense ``seq`` under concurrent appends, atomic batches, malformed events, not-found errors on
every read, pagination without gaps or repeats, the ``list_runs`` filters, purge,
notifications, the queue (idempotency, delays, leases that expire, nack, extend) and streams
with a live tail. The parts are also available alone (:class:`LogConformance`, ...).
"""

from __future__ import annotations

from worldflow.worlds._suite import WorldFactory
from worldflow.worlds._suite_log import LogConformance
from worldflow.worlds._suite_queue import QueueConformance, StreamConformance
from worldflow.worlds._suite_reads import ReadConformance

__all__ = [
    "LogConformance",
    "QueueConformance",
    "ReadConformance",
    "StreamConformance",
    "WorldConformance",
    "WorldFactory",
]


class WorldConformance(LogConformance, ReadConformance, QueueConformance, StreamConformance):
    """Every conformance test; subclass it and provide a ``world`` fixture (see the module)."""
