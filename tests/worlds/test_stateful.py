"""The hypothesis state machine of the world rules, run against every world."""

from __future__ import annotations

import pytest

from tests.worlds.factories import REOPENS, STATE_MACHINE_EXAMPLES, WORLD_FACTORIES
from worldflow.worlds.testing import WorldFactory, run_world_state_machine


# A few hundred examples take ~10 s of CPU on memory; the wall time on a busy shared machine,
# a syncing world or the --slow budget is several times that.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("factory", WORLD_FACTORIES)
def test_world_state_machine(factory: WorldFactory, slow: bool) -> None:
    run_world_state_machine(
        factory,
        slow=slow,
        max_examples=STATE_MACHINE_EXAMPLES.get(factory),
        reopen=factory in REOPENS,
        power_cut=REOPENS.get(factory),
    )
