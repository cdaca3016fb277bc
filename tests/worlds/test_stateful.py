"""The hypothesis state machine of the world rules, run against every world."""

from __future__ import annotations

import pytest

from tests.worlds.factories import WORLD_FACTORIES
from worldflow.worlds.testing import WorldFactory, run_world_state_machine


@pytest.mark.parametrize("factory", WORLD_FACTORIES)
def test_world_state_machine(factory: WorldFactory, slow: bool) -> None:
    run_world_state_machine(factory, slow=slow)
