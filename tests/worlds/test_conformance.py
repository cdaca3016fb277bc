"""The World conformance suite, run against every world in ``factories.WORLD_FACTORIES``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.worlds.factories import WORLD_FACTORIES
from worldflow.worlds import World
from worldflow.worlds.testing import WorldConformance, WorldFactory


@pytest.fixture(params=WORLD_FACTORIES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    factory: WorldFactory = request.param
    async with factory(tmp_path) as opened:
        yield opened


class TestWorldConformance(WorldConformance):
    pass
