"""Golden histories: logs recorded by the engine, replayed against the code as it is now.

A failure here means a change made old runs unreplayable: the log format no longer decodes,
replay delivers events in another order, a step's input is encoded differently, or a workflow
in ``workflows.py`` changed. If the change is intended (and runs in flight are known to be
fine with it), re-record with ``python -m tests.histories.record`` and say so in the
changelog. Recordings are never made by the tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.histories.record import SCENARIOS
from tests.histories.workflows import WORKFLOWS, changed_flow
from tests.properties.checks import check_no_duplicate_results, check_prefixes
from tests.properties.checks import replay as replay_instance
from worldflow import NondeterminismError
from worldflow.testing import ReplayDivergenceError, load_history, replay
from worldflow.worlds import RunCompleted, RunCreated, RunStatus

HERE = Path(__file__).parent
GOLDEN = sorted(p for p in HERE.glob("*.jsonl") if p.stem != "nondeterministic")


def test_every_scenario_has_its_recording() -> None:
    recorded = {p.stem.split(".child-")[0] for p in GOLDEN}
    assert recorded == set(SCENARIOS), "run `python -m tests.histories.record NAME` for new ones"
    assert (HERE / "nondeterministic.jsonl").exists()


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_a_recorded_history_replays_against_the_current_code(path: Path) -> None:
    events = load_history(path)
    first = events[0]
    assert isinstance(first, RunCreated)
    workflow = WORKFLOWS[first.workflow_name]
    result = replay(events, workflow)  # raises if the code no longer does what was recorded
    assert result.status.is_terminal, f"{path.name} was recorded unfinished"
    assert result.finished
    assert result.commands == []
    if result.status is RunStatus.COMPLETED:
        end = next(e for e in events if isinstance(e, RunCompleted))
        assert result.output is not None or bytes(end.output) == b"null"
    # Stronger than a whole replay: rebuilt from every prefix, then fed the rest, the run
    # computes the recorded outcome and ends in the same state.
    instance, whole = replay_instance(workflow.definition, events)
    instance.close()
    check_prefixes(workflow.definition, events, whole, strict_commands=False)
    check_no_duplicate_results(events)


def test_the_nondeterministic_history_is_refused_with_its_message() -> None:
    events = load_history(HERE / "nondeterministic.jsonl")
    expected = (HERE / "nondeterministic.expected.txt").read_text().rstrip("\n")
    with pytest.raises(NondeterminismError) as caught:
        replay(events, changed_flow)
    assert isinstance(caught.value, ReplayDivergenceError)
    assert str(caught.value) == expected
