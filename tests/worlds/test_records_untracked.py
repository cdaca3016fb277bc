"""The records a world keeps per run, and the events, are not tracked by the cyclic GC.

They are declared ``gc=False`` (see ``worldflow.worlds._records``): they hold only data, so no
cycle can run through them, and a world holding thousands of runs would otherwise make every
full collection walk them all (measured: the memory world's W1 spent ~10 % of its wall time
in the collector).
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import msgspec
import pytest

from worldflow.worlds import (
    NULL,
    ErrorInfo,
    Hook,
    RunCreated,
    RunStatus,
    Step,
    StepCreated,
    StepStatus,
    Wait,
    WorkflowRun,
    open_world,
)
from worldflow.worlds._events import _EVENT_CLASSES

_KEPT = [WorkflowRun, Step, Hook, Wait, ErrorInfo]


@pytest.mark.parametrize("cls", [*_KEPT, *sorted(_EVENT_CLASSES, key=lambda c: c.__name__)])
def test_the_class_is_not_tracked(cls: type[msgspec.Struct]) -> None:
    assert cls.__struct_config__.gc is False, f"{cls.__name__} lost gc=False"


def test_a_record_holding_containers_is_not_tracked() -> None:
    # A Struct that holds a dict or a list is tracked unless its class says gc=False.
    now = datetime.now(UTC)
    run = WorkflowRun(
        run_id="r",
        workflow_name="w",
        status=RunStatus.RUNNING,
        input=NULL,
        created_at=now,
        updated_at=now,
        metadata={"k": "v"},
        patches=["p"],
    )
    created = RunCreated(run_id="r", workflow_name="w", input=NULL, metadata={"k": "v"})
    assert not gc.is_tracked(run)
    assert not gc.is_tracked(created)


@pytest.mark.anyio
async def test_what_a_world_stores_and_returns_is_not_tracked() -> None:
    world = await open_world("memory://")
    try:
        await world.append(
            "r", [RunCreated(run_id="r", workflow_name="w", input=NULL, metadata={"k": "v"})]
        )
        result = await world.append(
            "r", [StepCreated(run_id="r", correlation_id="s", step_name="a", input=NULL)]
        )
        step = await world.get_step("r", "s")
        run = await world.get_run("r")
        events = (await world.list_events("r")).items
    finally:
        await world.aclose()
    assert step.status is StepStatus.PENDING
    tracked = [o for o in [*result.events, *result.steps, step, run, *events] if gc.is_tracked(o)]
    assert tracked == []
