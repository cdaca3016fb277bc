"""Conformance: a bad value is refused at the append, naming the field, and nothing is stored.

Every field of every event type is tried with values of the wrong type, values too big, ids
that break the id rule and strings that cannot be encoded. A world that stored one of them
would write a log it cannot read back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pytest

from worldflow.errors import EntityConflictError, InvalidEventError, RunNotFoundError
from worldflow.worlds._events import (
    AnyEvent,
    EventRaised,
    HookConflict,
    HookCreated,
    HookReceived,
    RunCancelled,
    RunCreated,
    RunSuspended,
    StateUpdated,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepRetrying,
    WaitCreated,
)
from worldflow.worlds._ids import MAX_ID_LENGTH, new_id
from worldflow.worlds._protocol import World
from worldflow.worlds._records import NULL, ErrorInfo
from worldflow.worlds._validation import (
    MAX_METADATA_ENTRIES,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_LENGTH,
)
from worldflow.worlds.testing._base import SuiteBase, add_hook, new_run, payload, start_step

__all__ = ["ValidationConformance"]

_LONE = "bad\ud800id"
_NAIVE = datetime(2030, 1, 1)  # naive: the point of the test


def _huge() -> msgspec.Raw:
    """A payload one byte over the limit (made when a test needs it: it is big)."""
    return msgspec.Raw(b'"' + b"x" * (MAX_PAYLOAD_BYTES - 1) + b'"')


# (case id, field the error must name, builder(run_id, step_id, hook_id) -> event)
_Builder = Callable[[str, str, str], Any]
_BAD_CREATES: list[tuple[str, str, Callable[[str], Any]]] = [
    ("resource_id-int", "resource_id", lambda r: _created(r, resource_id=5)),
    ("resource_id-surrogate", "resource_id", lambda r: _created(r, resource_id=_LONE)),
    ("workflow_name-int", "workflow_name", lambda r: _created(r, workflow_name=5)),
    ("workflow_name-empty", "workflow_name", lambda r: _created(r, workflow_name="")),
    (
        "workflow_name-long",
        "workflow_name",
        lambda r: _created(r, workflow_name="w" * (MAX_NAME_LENGTH + 1)),
    ),
    ("metadata-value-int", "metadata", lambda r: _created(r, metadata={"k": 5})),
    ("metadata-key-int", "metadata", lambda r: _created(r, metadata={5: "v"})),
    ("metadata-list", "metadata", lambda r: _created(r, metadata=["k"])),
    (
        "metadata-too-many",
        "metadata",
        lambda r: _created(r, metadata={f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}),
    ),
    ("input-not-json", "input", lambda r: _created(r, input=msgspec.Raw(b"{not json"))),
    ("input-not-raw", "input", lambda r: _created(r, input={"a": 1})),
    # One JSON value and more: inside the event's JSON it would read as another field.
    ("input-two-values", "input", lambda r: _created(r, input=msgspec.Raw(b'1,"seed":"x"'))),
    ("input-empty", "input", lambda r: _created(r, input=msgspec.Raw(b""))),
    ("input-huge", "input", lambda r: _created(r, input=_huge())),
    ("initial_state-str", "initial_state", lambda r: _created(r, initial_state="{}")),
    ("parent_run_id-int", "parent_run_id", lambda r: _created(r, parent_run_id=5)),
    ("seed-int", "seed", lambda r: _created(r, seed=5)),
]
_BAD_RUN_IDS: list[tuple[str, object]] = [
    ("surrogate", _LONE),
    ("newline", "run\nid"),
    ("nul", "run\x00id"),
    ("tab", "run\tid"),  # C0 control characters, DEL and C1 (NEL) are refused alike
    ("del", "run\x7fid"),
    ("nel", "run\x85id"),
    ("too-long", "r" * (MAX_ID_LENGTH + 1)),
    ("empty", ""),
]
_BAD_EVENTS: list[tuple[str, str, _Builder]] = [
    ("cancel-reason-int", "reason", lambda r, s, h: _ev(RunCancelled, run_id=r, reason=5)),
    (
        "cancel-reason-surrogate",
        "reason",
        lambda r, s, h: _ev(RunCancelled, run_id=r, reason=_LONE),
    ),
    (
        "cancel-reason-long",
        "reason",
        lambda r, s, h: _ev(RunCancelled, run_id=r, reason="x" * (MAX_TEXT_LENGTH + 1)),
    ),
    ("cancel-output-not-raw", "output", lambda r, s, h: _ev(RunCancelled, run_id=r, output=5)),
    ("suspend-reason-list", "reason", lambda r, s, h: _ev(RunSuspended, run_id=r, reason=["x"])),
    ("state-not-raw", "state", lambda r, s, h: _ev(StateUpdated, run_id=r, state="{}")),
    ("event-name-int", "name", lambda r, s, h: _ev(EventRaised, run_id=r, name=5)),
    ("event-name-control", "name", lambda r, s, h: _ev(EventRaised, run_id=r, name="a\x07b")),
    (
        "event-payload-huge",
        "payload",
        lambda r, s, h: _ev(EventRaised, run_id=r, name="e", payload=_huge()),
    ),
    (
        "step-name-none",
        "step_name",
        lambda r, s, h: _ev(
            StepCreated, run_id=r, correlation_id=new_id("step"), step_name=None, input=NULL
        ),
    ),
    (
        "step-id-surrogate",
        "correlation_id",
        lambda r, s, h: _ev(StepCreated, run_id=r, correlation_id=_LONE, step_name="s", input=NULL),
    ),
    (
        "step-id-int",
        "correlation_id",
        lambda r, s, h: _ev(StepCreated, run_id=r, correlation_id=5, step_name="s", input=NULL),
    ),
    (
        "step-result-not-json",
        "result",
        lambda r, s, h: _ev(StepCompleted, run_id=r, correlation_id=s, result=msgspec.Raw(b"[1,")),
    ),
    (
        "step-error-str",
        "error",
        lambda r, s, h: _ev(StepFailed, run_id=r, correlation_id=s, error="boom"),
    ),
    (
        "step-error-name-int",
        "error.name",
        lambda r, s, h: _ev(
            StepFailed, run_id=r, correlation_id=s, error=_ev(ErrorInfo, name=5, message="m")
        ),
    ),
    (
        "step-error-message-surrogate",
        "error",
        lambda r, s, h: _ev(
            StepFailed, run_id=r, correlation_id=s, error=_ev(ErrorInfo, name="E", message=_LONE)
        ),
    ),
    (
        "retry_after-str",
        "retry_after",
        lambda r, s, h: _ev(
            StepRetrying,
            run_id=r,
            correlation_id=s,
            error=_ev(ErrorInfo, name="E", message="m"),
            retry_after="soon",
        ),
    ),
    (
        "retry_after-naive",
        "retry_after",
        lambda r, s, h: _ev(
            StepRetrying,
            run_id=r,
            correlation_id=s,
            error=_ev(ErrorInfo, name="E", message="m"),
            retry_after=_NAIVE,
        ),
    ),
    (
        "wait-resume_at-int",
        "resume_at",
        lambda r, s, h: _ev(WaitCreated, run_id=r, correlation_id=new_id("wait"), resume_at=5),
    ),
    (
        "wait-event_name-empty",
        "event_name",
        lambda r, s, h: _ev(WaitCreated, run_id=r, correlation_id=new_id("wait"), event_name=""),
    ),
    (
        "hook-token-int",
        "token",
        lambda r, s, h: _ev(HookCreated, run_id=r, correlation_id=new_id("hook"), token=5),
    ),
    (
        "hook-token-surrogate",
        "token",
        lambda r, s, h: _ev(HookCreated, run_id=r, correlation_id=new_id("hook"), token=_LONE),
    ),
    (
        "hook-token-long",
        "token",
        lambda r, s, h: _ev(
            HookCreated, run_id=r, correlation_id=new_id("hook"), token="t" * (MAX_ID_LENGTH + 1)
        ),
    ),
    (
        "hook-webhook-str",
        "is_webhook",
        lambda r, s, h: _ev(
            HookCreated, run_id=r, correlation_id=new_id("hook"), token="tk-x", is_webhook="yes"
        ),
    ),
    (
        "hook-payload-int",
        "payload",
        lambda r, s, h: _ev(HookReceived, run_id=r, correlation_id=h, payload=5),
    ),
    (
        "hook-payload-huge",
        "payload",
        lambda r, s, h: _ev(HookReceived, run_id=r, correlation_id=h, payload=_huge()),
    ),
]


def _ev(cls: Callable[..., Any], **fields: Any) -> Any:
    """``cls(**fields)`` with no type checking: these are the values static types forbid."""
    return cls(**fields)


def _created(run_id: str, **fields: Any) -> RunCreated:
    base: dict[str, Any] = {"workflow_name": "wf", "input": NULL}
    return RunCreated(run_id=run_id, **{**base, **fields})


class ValidationConformance(SuiteBase):
    """Every event field is checked (type, size, id rule) before anything is stored."""

    @pytest.mark.parametrize(
        ("field", "build"), [pytest.param(f, b, id=i) for i, f, b in _BAD_CREATES]
    )
    async def test_a_bad_run_created_creates_no_run(
        self, world: World, field: str, build: Callable[[str], Any]
    ) -> None:
        run_id = new_id("wrun")
        with pytest.raises(InvalidEventError, match=f"`{field}"):
            await world.append(run_id, [build(run_id)])
        with pytest.raises(RunNotFoundError):
            await world.get_run(run_id)
        assert run_id not in [r.run_id for r in (await world.list_runs()).items]

    @pytest.mark.parametrize("run_id", [pytest.param(v, id=i) for i, v in _BAD_RUN_IDS])
    async def test_a_run_id_that_breaks_the_id_rule_is_refused(
        self, world: World, run_id: str
    ) -> None:
        with pytest.raises(InvalidEventError, match="`run_id`"):
            await world.append(run_id, [_created(run_id)])
        assert (await world.list_runs()).items == []

    @pytest.mark.parametrize(
        ("field", "build"), [pytest.param(f, b, id=i) for i, f, b in _BAD_EVENTS]
    )
    async def test_a_bad_field_is_refused_and_nothing_is_stored(
        self, world: World, field: str, build: _Builder
    ) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        step_id = await start_step(world, r)
        hook_id = new_id("hook")
        await add_hook(world, r, f"tok-{r}", hook_id)
        before = await world.get_run(r)
        events = (await world.list_events(r)).items
        bad: AnyEvent = build(r, step_id, hook_id)
        with pytest.raises(InvalidEventError, match=f"`{field}"):
            await world.append(r, [bad])
        # nor in a batch with good events: the batch is atomic
        good = EventRaised(run_id=r, name="fine", payload=payload(1))
        with pytest.raises(InvalidEventError, match=f"`{field}"):
            await world.append(r, [good, bad])
        assert await world.get_run(r) == before
        assert (await world.list_events(r)).items == events
        # and the run goes on
        done = await world.append(
            r, [StepCompleted(run_id=r, correlation_id=step_id, result=payload("ok"))]
        )
        assert done.events[0].seq == before.last_seq + 1

    async def test_values_at_the_limits_are_stored(self, world: World) -> None:
        run_id = "r" * MAX_ID_LENGTH
        created = _created(
            run_id,
            workflow_name="w" * MAX_NAME_LENGTH,
            metadata={f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES)},
            resource_id="tenant/é 1",
        )
        run = (await world.append(run_id, [created])).run
        assert run.run_id == run_id
        reason = "x" * MAX_TEXT_LENGTH
        cancelled = await world.append(
            run_id,
            [RunCancelled(run_id=run_id, reason=reason)],
        )
        assert cancelled.run.cancel_reason == reason

    @pytest.mark.parametrize("again", [False, True], ids=["created", "purged-and-created-again"])
    async def test_a_batch_is_refused_by_its_first_failing_event(
        self, world: World, again: bool
    ) -> None:
        # The rules run in the batch's order on every world: a run_created for a run that
        # exists is a conflict before a bad event after it is invalid, and the other way
        # round. (A world that checks some events up front, or assumes a run_created names
        # a new run, answers differently.)
        r = (await new_run(world)).run_id
        if again:
            await world.append(r, [RunCancelled(run_id=r)])
            await world.purge(r)
            await world.append(r, [_created(r)])
        bad_hook = HookCreated(run_id=r, correlation_id=new_id("hook"), token=_LONE)
        forged = HookConflict(run_id=r, correlation_id=new_id("hook"), token="t")
        for bad in (bad_hook, forged):
            with pytest.raises(EntityConflictError):
                await world.append(r, [_created(r), bad])
            with pytest.raises(InvalidEventError):
                await world.append(r, [bad, _created(r)])
        assert [e.type for e in (await world.list_events(r)).items] == ["run_created"]
