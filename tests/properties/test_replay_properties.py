"""Replay properties at the workflow-instance level, over generated programs and schedules.

1. The live run ends exactly where a run rebuilt from any prefix of its log (then fed the rest)
   ends, and after each prefix the rebuilt run owes exactly the commands the live run appended.
2. Crashes (instance and in-flight attempts lost) and cache evictions at any append boundary
   reach the same result and the same log (less the re-run attempts' ``step_started``).
3. No step is created twice or gets two recorded results, and a step with a result in the log
   is never asked for again.
4. Changing the program at an operation the log recorded (renaming a step, changing its input,
   inserting a step before it, changing a child) is a ``NondeterminismError`` on replay of the
   old log, never a completed run.

A failure prints the program and schedule as Python (see ``strategies.note_run``).
"""

from __future__ import annotations

from hypothesis import given

from tests.properties.budget import budget
from tests.properties.checks import (
    check_mutation,
    check_no_duplicate_results,
    check_prefixes,
    mutations,
)
from tests.properties.programs import definition
from tests.properties.simulation import run_schedule
from tests.properties.strategies import Scenario, note_run, scenarios


@budget(100)
@given(scenarios())
def test_replay_from_any_prefix_ends_like_the_live_run(scenario: Scenario) -> None:
    program, schedule = scenario
    reference, disrupted = run_schedule(program, schedule)
    note_run(program, schedule, reference, disrupted)
    assert disrupted.progress is not None
    check_prefixes(disrupted.definition, disrupted.log, disrupted.progress)


@budget(300)
@given(scenarios())
def test_crashes_and_evictions_reach_the_same_result(scenario: Scenario) -> None:
    program, schedule = scenario
    reference, disrupted = run_schedule(program, schedule)
    note_run(program, schedule, reference, disrupted)
    assert disrupted.outcome() == reference.outcome()
    assert disrupted.projection() == reference.projection()
    for sim in (reference, disrupted):
        check_no_duplicate_results(sim.log)


@budget(150)
@given(scenarios())
def test_a_changed_program_is_caught_as_nondeterminism(scenario: Scenario) -> None:
    program, schedule = scenario
    reference, _ = run_schedule(program, schedule)
    note_run(program, schedule, reference)
    for what, changed in mutations(program, reference.log):
        check_mutation(definition(changed), reference.log, what)
