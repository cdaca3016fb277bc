"""Conformance tests of ``child_ended``: a parent is told only the end its child recorded.

``child_ended`` is an event anyone may append (the engine that saw the child end tells the
parent, whoever owns the parent), so the world checks it against the child run it names: a
run that exists, whose parent is the run told and whose token the parent's hook holds, that
has ended, with exactly the outcome carried; and a parent is told once per child.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    RunNotFoundError,
    RunNotTerminalError,
)
from worldflow.worlds._events import (
    AnyEvent,
    ChildEnded,
    EventRaised,
    HookCreated,
    HookReceived,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunStarted,
    StepCreated,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import World
from worldflow.worlds._records import (
    NULL,
    RESERVED_TOKEN_PREFIX,
    ChildCancelled,
    ChildCompleted,
    ChildFailed,
    ChildOutcome,
    ErrorInfo,
    ForkPoint,
    RunStatus,
    WorkflowRun,
)
from worldflow.worlds.testing._base import SuiteBase, new_run, payload

__all__ = ["ChildOutcomeConformance", "child_hook", "ended_child"]

_CHILD_TOKEN = f"{RESERVED_TOKEN_PREFIX}child:"
_FAILURE = ErrorInfo(name="KeyError", message="no such key", code="E1", stack="Traceback ...")

# How a child ends, and the outcome its parent must then be told.
ENDINGS: dict[str, tuple[Any, ChildOutcome]] = {
    "completed": (
        lambda r: RunCompleted(run_id=r, output=payload({"n": 7})),
        ChildCompleted(output=payload({"n": 7})),
    ),
    "failed": (  # the stack stays with the child
        lambda r: RunFailed(run_id=r, error=_FAILURE),
        ChildFailed(error=ErrorInfo(name="KeyError", message="no such key", code="E1")),
    ),
    "cancelled": (
        lambda r: RunCancelled(run_id=r, reason="not needed"),
        ChildCancelled(reason="not needed"),
    ),
}

# Outcomes a child that completed with {"n": 7} did not end with.
WRONG_OUTCOMES: dict[str, ChildOutcome] = {
    "other-output": ChildCompleted(output=payload({"n": 8})),
    "same-value-other-bytes": ChildCompleted(output=msgspec.Raw(b'{"n":  7}')),
    "no-output": ChildCompleted(output=NULL),
    "failed": ChildFailed(error=ErrorInfo(name="KeyError", message="no such key")),
    "cancelled": ChildCancelled(reason=None),
}


async def child_hook(world: World, parent_id: str, child_id: str, hook_id: str = "hc") -> None:
    """Give ``parent_id`` the hook that waits for the outcome of ``child_id``."""
    token = _CHILD_TOKEN + child_id
    await world.append(
        parent_id, [HookCreated(run_id=parent_id, correlation_id=hook_id, token=token)]
    )


async def ended_child(
    world: World,
    parent_id: str | None,
    child_id: str,
    end: AnyEvent | None = None,
) -> WorkflowRun:
    """Create the run ``child_id`` (a child of ``parent_id``), started, and end it with
    ``end`` (``None``: it keeps running); return its view."""
    created = RunCreated(
        run_id=child_id, workflow_name="kid", input=payload(1), parent_run_id=parent_id
    )
    result = await world.append(child_id, [created, RunStarted(run_id=child_id)])
    if end is not None:
        result = await world.append(child_id, [end])
    return result.run


def _told(parent_id: str, child_id: str, outcome: ChildOutcome, hook_id: str = "hc") -> ChildEnded:
    return ChildEnded(
        run_id=parent_id, correlation_id=hook_id, child_run_id=child_id, outcome=outcome
    )


class ChildOutcomeConformance(SuiteBase):
    """``child_ended`` reports the child's recorded end, once."""

    async def _parent_and_child(self, world: World) -> tuple[str, str]:
        parent = await new_run(world, started=True)
        child_id = f"{parent.run_id}-kid"
        await child_hook(world, parent.run_id, child_id)
        return parent.run_id, child_id

    async def _nothing_stored(self, world: World, parent_id: str, last_seq: int) -> None:
        assert (await world.get_run(parent_id)).last_seq == last_seq
        hook = await world.get_hook_by_token(_CHILD_TOKEN + f"{parent_id}-kid")
        assert hook.received_count == 0

    async def test_a_child_outcome_goes_only_by_child_ended(self, world: World) -> None:
        r, child_id = await self._parent_and_child(world)
        await world.append(r, [HookCreated(run_id=r, correlation_id="h", token=new_id("t"))])
        with pytest.raises(InvalidEventError, match="only the engine sends"):
            await world.append(r, [HookReceived(run_id=r, correlation_id="hc", payload=NULL)])
        outcome = ChildCompleted(output=payload(7))
        await ended_child(world, r, child_id, RunCompleted(run_id=child_id, output=payload(7)))
        with pytest.raises(InvalidEventError, match="whose token is"):  # not that child's hook
            await world.append(r, [_told(r, child_id, outcome, hook_id="h")])
        ended = _told(r, child_id, outcome)
        result = await world.append(r, [ended])
        assert result.events[0] == msgspec.structs.replace(
            ended,
            seq=result.events[0].seq,
            event_id=result.events[0].event_id,
            created_at=result.events[0].created_at,
        )
        assert (await world.get_hook_by_token(_CHILD_TOKEN + child_id)).received_count == 1
        [stored] = (await world.list_events(r, after_seq=result.events[0].seq - 1)).items
        assert stored == result.events[0]

    @pytest.mark.parametrize("ending", list(ENDINGS))
    async def test_the_outcome_the_child_recorded_is_accepted(
        self, world: World, ending: str
    ) -> None:
        r, child_id = await self._parent_and_child(world)
        end, outcome = ENDINGS[ending]
        child = await ended_child(world, r, child_id, end(child_id))
        assert child.status is RunStatus(ending)
        result = await world.append(r, [_told(r, child_id, outcome)])
        assert [e.type for e in result.events] == ["child_ended"]
        assert result.events[0].outcome == outcome  # type: ignore[union-attr]

    async def test_no_such_child_is_refused(self, world: World) -> None:
        r, child_id = await self._parent_and_child(world)  # the child was never started
        last = (await world.get_run(r)).last_seq
        with pytest.raises(InvalidEventError, match=r"not a child of run .*no such run"):
            await world.append(r, [_told(r, child_id, ChildCompleted(output=payload(7)))])
        await self._nothing_stored(world, r, last)

    @pytest.mark.parametrize("whose", ["another-run", "no-parent"])
    async def test_a_run_that_is_not_this_runs_child_is_refused(
        self, world: World, whose: str
    ) -> None:
        r, child_id = await self._parent_and_child(world)
        other = await new_run(world, started=True)
        # The run the hook names ended, but as another run's child (or nobody's).
        parent_id = other.run_id if whose == "another-run" else None
        await ended_child(
            world, parent_id, child_id, RunCompleted(run_id=child_id, output=payload(7))
        )
        last = (await world.get_run(r)).last_seq
        with pytest.raises(InvalidEventError, match=r"not a child of run .*its parent is"):
            await world.append(r, [_told(r, child_id, ChildCompleted(output=payload(7)))])
        await self._nothing_stored(world, r, last)

    async def test_a_child_that_has_not_ended_is_refused(self, world: World) -> None:
        r, child_id = await self._parent_and_child(world)
        await ended_child(world, r, child_id, None)
        last = (await world.get_run(r)).last_seq
        with pytest.raises(RunNotTerminalError, match="has not ended"):
            await world.append(r, [_told(r, child_id, ChildCompleted(output=payload(7)))])
        await self._nothing_stored(world, r, last)
        # Nor in a batch with events the rules accept: the batch is refused whole.
        with pytest.raises(RunNotTerminalError):
            await world.append(
                r,
                [
                    EventRaised(run_id=r, name="go"),
                    _told(r, child_id, ChildCompleted(output=payload(7))),
                ],
            )
        await self._nothing_stored(world, r, last)
        # Once the child ends, its end goes through.
        await world.append(child_id, [RunCompleted(run_id=child_id, output=payload(7))])
        await world.append(r, [_told(r, child_id, ChildCompleted(output=payload(7)))])

    @pytest.mark.parametrize("wrong", list(WRONG_OUTCOMES))
    async def test_an_outcome_the_child_did_not_end_with_is_refused(
        self, world: World, wrong: str
    ) -> None:
        r, child_id = await self._parent_and_child(world)
        end, outcome = ENDINGS["completed"]
        await ended_child(world, r, child_id, end(child_id))
        last = (await world.get_run(r)).last_seq
        with pytest.raises(InvalidEventError, match="did not end with"):
            await world.append(r, [_told(r, child_id, WRONG_OUTCOMES[wrong])])
        await self._nothing_stored(world, r, last)
        await world.append(r, [_told(r, child_id, outcome)])  # the true one still goes

    @pytest.mark.parametrize("field", ["name", "message", "code", "stack"])
    async def test_a_failure_other_than_the_childs_is_refused(
        self, world: World, field: str
    ) -> None:
        r, child_id = await self._parent_and_child(world)
        end, outcome = ENDINGS["failed"]
        await ended_child(world, r, child_id, end(child_id))
        assert isinstance(outcome, ChildFailed)
        forged = ChildFailed(error=msgspec.structs.replace(outcome.error, **{field: "other"}))
        with pytest.raises(InvalidEventError, match="did not end with"):
            await world.append(r, [_told(r, child_id, forged)])

    async def test_a_parent_is_told_once_per_child(self, world: World) -> None:
        r, child_id = await self._parent_and_child(world)
        end, outcome = ENDINGS["completed"]
        await ended_child(world, r, child_id, end(child_id))
        await world.append(r, [_told(r, child_id, outcome)])
        last = (await world.get_run(r)).last_seq
        for again in ([_told(r, child_id, outcome)], [_told(r, child_id, outcome)] * 2):
            with pytest.raises(EntityConflictError, match="first child_ended wins"):
                await world.append(r, again)
        assert (await world.get_run(r)).last_seq == last
        assert (await world.get_hook_by_token(_CHILD_TOKEN + child_id)).received_count == 1
        # Two in one batch: the second is refused, and with it the batch.
        other = f"{r}-kid2"
        await child_hook(world, r, other, hook_id="hc2")
        await ended_child(world, r, other, end(other))
        last = (await world.get_run(r)).last_seq
        with pytest.raises(EntityConflictError, match="first child_ended wins"):
            await world.append(r, [_told(r, other, outcome, "hc2")] * 2)
        assert (await world.get_run(r)).last_seq == last

    async def test_a_fork_copies_its_sources_child_outcomes_in_its_first_batch(
        self, world: World
    ) -> None:
        # A fork from a step reuses the children its source saw end: its first batch copies
        # their outcomes under the fork's own child ids, which name no run.
        fork_id = new_id("wrun")
        kid = f"{fork_id}-kid"
        point = ForkPoint(
            step_id="s9", step_name="s", step_number=3, ids_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
        copies: list[AnyEvent] = [
            RunCreated(
                run_id=fork_id,
                workflow_name="wf",
                input=payload(1),
                forked_from=new_id("wrun"),
                fork=point,
            ),
            RunStarted(run_id=fork_id),
            HookCreated(run_id=fork_id, correlation_id="hc", token=_CHILD_TOKEN + kid),
            StepCreated(run_id=fork_id, correlation_id="s1", step_name="s", input=payload(1)),
            _told(fork_id, kid, ChildCompleted(output=payload(7))),
        ]
        result = await world.append(fork_id, copies)
        assert "child_ended" in [e.type for e in result.events]
        # After its first batch a fork is a run like any other.
        later = f"{fork_id}-kid2"
        await child_hook(world, fork_id, later, hook_id="hc2")
        with pytest.raises(InvalidEventError, match="no such run"):
            await world.append(
                fork_id, [_told(fork_id, later, ChildCompleted(output=payload(7)), "hc2")]
            )
        # And a run that is not a fork cannot start with an outcome of a child.
        plain_id = new_id("wrun")
        with pytest.raises(InvalidEventError, match="no such run"):
            await world.append(
                plain_id,
                [
                    RunCreated(run_id=plain_id, workflow_name="wf", input=payload(1)),
                    HookCreated(
                        run_id=plain_id, correlation_id="hc", token=f"{_CHILD_TOKEN}{plain_id}-k"
                    ),
                    _told(plain_id, f"{plain_id}-k", ChildCompleted(output=payload(7))),
                ],
            )
        with pytest.raises(RunNotFoundError):  # nothing of the batch was stored
            await world.get_run(plain_id)
