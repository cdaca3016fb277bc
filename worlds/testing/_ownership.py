"""Conformance tests of the ``Catalog`` and ``Ownership`` roles and of fencing.

Several engines share a world; these tests play them with registrations on one world object
(a remote or PostgreSQL world sees the same calls from several processes). Expiry is tested
with a TTL of a few hundredths of a second waited out with a short real sleep: the world's
clock decides, and only a world's own clock is portable across worlds.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from worldflow.errors import (
    EntityConflictError,
    OwnershipLostError,
    RunOwnedElsewhereError,
    WorkflowNotRegisteredError,
)
from worldflow.worlds._events import (
    AnyEvent,
    ChildEnded,
    EventRaised,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    PatchMarked,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStalled,
    RunStarted,
    RunSuspended,
    RunUnstalled,
    StateUpdated,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepInterrupted,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    StepWoken,
    WaitCompleted,
    WaitCreated,
    WaitWoken,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import OWNER_ONLY_EVENTS, World
from worldflow.worlds._records import (
    RESERVED_TOKEN_PREFIX,
    ChildCompleted,
    Fence,
    ParameterInfo,
    QueueMessage,
    RunStatus,
    WorkflowInfo,
    WorkflowRun,
)
from worldflow.worlds.testing._base import SuiteBase, error_info, new_run, payload
from worldflow.worlds.testing._children import ended_child

__all__ = ["CatalogConformance", "OwnershipConformance"]

# seconds: an engine that is meant to die, but only after the few appends a test makes for it
# first (on a database world on a loaded machine those took up to ~70 ms)
_SHORT_TTL = 0.4
_LONG_TTL = 600.0  # an engine that stays live for the whole test
_EXPIRED = 0.6  # a real sleep past _SHORT_TTL


def _fence(run: WorkflowRun) -> Fence:
    assert run.owner_id is not None
    return Fence(engine_id=run.owner_id, epoch=run.owner_epoch)


_LATER = datetime(2100, 1, 1, tzinfo=UTC)


async def _owned_run(world: World, engine_id: str, workflow_name: str = "wf") -> WorkflowRun:
    """A running run created by ``engine_id`` (so it owns it) with running steps ``s1`` and
    ``s3``, a wait ``w1`` for event ``go``, a sleep ``w3``, a live hook ``h1`` and the hook
    ``hc`` of a child ``{run_id}-kid``."""
    run_id = new_id("wrun")
    fence = Fence(engine_id=engine_id, epoch=0)
    created = RunCreated(run_id=run_id, workflow_name=workflow_name, input=payload(1))
    result = await world.append(run_id, [created, RunStarted(run_id=run_id)], fence=fence)
    run = result.run
    result = await world.append(
        run_id,
        [
            StepCreated(run_id=run_id, correlation_id="s1", step_name="s", input=payload(1)),
            StepStarted(run_id=run_id, correlation_id="s1"),
            StepCreated(run_id=run_id, correlation_id="s3", step_name="s", input=payload(3)),
            StepStarted(run_id=run_id, correlation_id="s3"),
            WaitCreated(run_id=run_id, correlation_id="w1", event_name="go"),
            WaitCreated(run_id=run_id, correlation_id="w3", resume_at=_LATER),
            HookCreated(run_id=run_id, correlation_id="h1", token=new_id("tok")),
            HookCreated(
                run_id=run_id,
                correlation_id="hc",
                token=f"{RESERVED_TOKEN_PREFIX}child:{run_id}-kid",
            ),
        ],
        fence=_fence(run),
    )
    return result.run


def _owner_only(run_id: str) -> list[AnyEvent]:
    """One event of every owner-only type that the rules accept on an ``_owned_run``."""
    return [
        RunStarted(run_id=run_id),
        StepCreated(run_id=run_id, correlation_id="s2", step_name="s", input=payload(2)),
        StepStarted(run_id=run_id, correlation_id="s1"),
        StepInterrupted(run_id=run_id, correlation_id="s3", reason="the engine stopped"),
        WaitCreated(run_id=run_id, correlation_id="w2", event_name="later"),
        WaitCompleted(run_id=run_id, correlation_id="w1"),
        HookCreated(run_id=run_id, correlation_id="h2", token=new_id("tok")),
        HookDisposed(run_id=run_id, correlation_id="h1"),
        StateUpdated(run_id=run_id, state=payload({"n": 1})),
        PatchMarked(run_id=run_id, name="a-patch"),
        RunStalled(run_id=run_id, error=error_info()),
        RunUnstalled(run_id=run_id),
        RunCompleted(run_id=run_id, output=payload("done")),
        RunFailed(run_id=run_id, error=error_info()),
    ]


_ANYONE: list[Callable[[str], AnyEvent]] = [
    lambda r: HookReceived(run_id=r, correlation_id="h1", payload=payload("hi")),
    lambda r: ChildEnded(
        run_id=r,
        correlation_id="hc",
        child_run_id=f"{r}-kid",
        outcome=ChildCompleted(output=payload(5)),
    ),
    lambda r: EventRaised(run_id=r, name="go", payload=payload(1)),
    lambda r: StepRetrying(run_id=r, correlation_id="s1", error=error_info(), retry_after=_LATER),
    lambda r: StepWoken(run_id=r, correlation_id="s1", actor="ops"),
    lambda r: WaitWoken(run_id=r, correlation_id="w3", actor="ops"),
    lambda r: StepSuspended(run_id=r, correlation_id="s1", payload=payload("wait")),
    lambda r: StepResumed(run_id=r, correlation_id="s1", data=payload("go on")),
    lambda r: RunSuspended(run_id=r, reason="pause"),
    lambda r: RunResumed(run_id=r),
    lambda r: StepCompleted(run_id=r, correlation_id="s1", result=payload(42)),
    lambda r: StepFailed(run_id=r, correlation_id="s3", error=error_info()),
    lambda r: RunCancelled(run_id=r, reason="stop"),
]
"""Events anyone may append, in an order the rules accept one after the other."""


def _entry(name: str, doc: str = "A workflow.") -> WorkflowInfo:
    return WorkflowInfo(
        name=name,
        parameters=(
            ParameterInfo(
                name="order_id",
                kind="positional_or_keyword",
                annotation="str",
                json_schema=payload({"type": "string"}),
            ),
        ),
        step_names=["charge", "ship"],
        doc=doc,
        input_schema=payload({"type": "object", "properties": {"order_id": {"type": "string"}}}),
    )


class CatalogConformance(SuiteBase):
    """``publish_workflows`` / ``list_workflows`` / ``get_workflow``."""

    async def test_published_entries_are_listed_by_name(self, world: World) -> None:
        assert await world.list_workflows() == []
        await world.publish_workflows([_entry("b:ship"), _entry("a:order")])
        listed = await world.list_workflows()
        assert [e.name for e in listed] == ["a:order", "b:ship"]
        got = await world.get_workflow("a:order")
        assert got == _entry("a:order")
        assert bytes(got.input_schema) == bytes(_entry("a:order").input_schema)  # byte for byte
        assert got.parameters[0].schema() == {"type": "string"}
        assert got.engines == ()

    async def test_last_publish_wins(self, world: World) -> None:
        await world.publish_workflows([_entry("a:order", doc="old")])
        await world.publish_workflows([_entry("a:order", doc="new")])
        assert (await world.get_workflow("a:order")).doc == "new"
        assert len(await world.list_workflows()) == 1

    async def test_unknown_workflow_is_not_registered(self, world: World) -> None:
        with pytest.raises(WorkflowNotRegisteredError):
            await world.get_workflow("nobody:publishes-this")

    async def test_engines_are_the_live_ones_serving_it(self, world: World) -> None:
        # what a publisher says about engines is ignored: the world knows who is live
        forged = msgspec.structs.replace(_entry("a:order"), engines=("forged",))
        await world.publish_workflows([forged])
        assert (await world.get_workflow("a:order")).engines == ()
        one = await world.register_engine(workflows=["a:order"], ttl=_LONG_TTL)
        two = await world.register_engine(workflows=["a:order", "b:ship"], ttl=_LONG_TTL)
        await world.register_engine(workflows=["c:other"], ttl=_LONG_TTL)
        entry = await world.get_workflow("a:order")
        assert sorted(entry.engines) == sorted([one.engine_id, two.engine_id])
        await world.deregister_engine(one.engine_id)
        [listed] = await world.list_workflows()
        assert listed.engines == (two.engine_id,)

    async def test_an_expired_engine_serves_nothing(self, world: World) -> None:
        await world.publish_workflows([_entry("a:order")])
        await world.register_engine(workflows=["a:order"], ttl=_SHORT_TTL)
        await asyncio.sleep(_EXPIRED)
        assert (await world.get_workflow("a:order")).engines == ()


class OwnershipConformance(SuiteBase):
    """Engines, run owners, fencing of owner-only events, takeover of orphans."""

    # -- engines -----------------------------------------------------------------------------

    async def test_register_heartbeat_deregister(self, world: World) -> None:
        one = await world.register_engine(workflows=["wf", "wf"], ttl=_LONG_TTL)
        two = await world.register_engine(workflows=[], ttl=_LONG_TTL)
        assert one.engine_id != two.engine_id
        assert one.workflows == ("wf",)
        assert one.expires_at > one.heartbeat_at
        assert [e.engine_id for e in await world.list_engines()] == [
            one.engine_id,
            two.engine_id,
        ]
        beat = await world.heartbeat(one.engine_id)
        assert beat.engine_id == one.engine_id
        assert beat.expires_at >= one.expires_at
        assert await world.deregister_engine(one.engine_id) == 0
        assert await world.deregister_engine(one.engine_id) == 0  # idempotent
        with pytest.raises(OwnershipLostError):
            await world.heartbeat(one.engine_id)
        with pytest.raises(OwnershipLostError):
            await world.heartbeat("eng_never_registered")
        assert [e.engine_id for e in await world.list_engines()] == [two.engine_id]

    async def test_an_engine_without_heartbeats_expires(self, world: World) -> None:
        engine = await world.register_engine(workflows=["wf"], ttl=_SHORT_TTL)
        await asyncio.sleep(_EXPIRED)
        assert engine.engine_id not in [e.engine_id for e in await world.list_engines()]
        with pytest.raises(OwnershipLostError):
            await world.heartbeat(engine.engine_id)
        with pytest.raises(OwnershipLostError):  # and it stays dead
            await world.heartbeat(engine.engine_id)

    # -- fencing -----------------------------------------------------------------------------

    async def test_a_fenced_creation_owns_the_run(self, world: World) -> None:
        engine = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, engine.engine_id)
        assert (run.owner_id, run.owner_epoch) == (engine.engine_id, 1)
        stored = await world.get_run(run.run_id)
        assert (stored.owner_id, stored.owner_epoch) == (engine.engine_id, 1)
        unowned = await new_run(world, started=True)
        assert (unowned.owner_id, unowned.owner_epoch) == (None, 0)

    @pytest.mark.parametrize("index", range(len(OWNER_ONLY_EVENTS)))
    async def test_owner_only_events_are_refused_from_anyone_else(
        self, world: World, index: int
    ) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        other = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, owner.engine_id)
        event = _owner_only(run.run_id)[index]
        assert {type(e) for e in _owner_only(run.run_id)} == OWNER_ONLY_EVENTS
        fences: list[Fence | None] = [
            Fence(engine_id=other.engine_id, epoch=run.owner_epoch),
            Fence(engine_id=owner.engine_id, epoch=run.owner_epoch - 1),  # a stale epoch
            None,
        ]
        for fence in fences:
            with pytest.raises(RunOwnedElsewhereError):
                await world.append(run.run_id, [event], fence=fence)
        assert (await world.get_run(run.run_id)).last_seq == run.last_seq  # nothing stored
        result = await world.append(run.run_id, [event], fence=_fence(run))
        assert [e.type for e in result.events] in ([event.type], [])  # run_started: a no-op
        assert result.run.owner_id == owner.engine_id

    async def test_a_refused_event_refuses_its_whole_batch(self, world: World) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        other = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, owner.engine_id)
        received = HookReceived(run_id=run.run_id, correlation_id="h1", payload=payload(1))
        with pytest.raises(RunOwnedElsewhereError):
            await world.append(
                run.run_id,
                [received, StateUpdated(run_id=run.run_id, state=payload(2))],
                fence=Fence(engine_id=other.engine_id, epoch=run.owner_epoch),
            )
        assert (await world.get_run(run.run_id)).last_seq == run.last_seq

    async def test_anyone_may_append_external_events_and_results(self, world: World) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        other = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, owner.engine_id)
        kid = f"{run.run_id}-kid"  # the child_ended below reports its end
        await ended_child(world, run.run_id, kid, RunCompleted(run_id=kid, output=payload(5)))
        kinds = {type(make(run.run_id)) for make in _ANYONE} | {RunCreated, HookConflict}
        every = set(typing.get_args(AnyEvent))
        assert kinds | OWNER_ONLY_EVENTS == every  # each type is filed one way or the other
        assert not kinds & OWNER_ONLY_EVENTS
        for n, make in enumerate(_ANYONE):
            fence = None if n % 2 else Fence(engine_id=other.engine_id, epoch=run.owner_epoch)
            event = make(run.run_id)
            result = await world.append(run.run_id, [event], fence=fence)
            assert [e.type for e in result.events] == [event.type]
            assert (result.run.owner_id, result.run.owner_epoch) == (owner.engine_id, 1)
        assert (await world.get_run(run.run_id)).status is RunStatus.CANCELLED

    async def test_the_first_step_result_wins_whoever_sends_it(self, world: World) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        other = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, owner.engine_id)
        first = StepCompleted(run_id=run.run_id, correlation_id="s1", result=payload("zombie"))
        await world.append(run.run_id, [first], fence=Fence(engine_id=other.engine_id, epoch=0))
        second = StepCompleted(run_id=run.run_id, correlation_id="s1", result=payload("owner"))
        with pytest.raises(EntityConflictError):
            await world.append(run.run_id, [second], fence=_fence(run))
        step = await world.get_step(run.run_id, "s1")
        assert bytes(step.output) == bytes(payload("zombie"))

    async def test_a_fenced_append_claims_an_unowned_run(self, world: World) -> None:
        engine = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await new_run(world)  # a client's start: nobody owns it
        # an unfenced decision on an unowned run claims nothing (tools, single-process tests)
        result = await world.append(run.run_id, [RunStarted(run_id=run.run_id)])
        assert (result.run.owner_id, result.run.owner_epoch) == (None, 0)
        with pytest.raises(RunOwnedElsewhereError):  # it must have seen the current epoch
            await world.append(
                run.run_id,
                [StateUpdated(run_id=run.run_id, state=payload(1))],
                fence=Fence(engine_id=engine.engine_id, epoch=3),
            )
        event = StateUpdated(run_id=run.run_id, state=payload(1))
        fence = Fence(engine_id=engine.engine_id, epoch=0)
        claimed = await world.append(run.run_id, [event], fence=fence)
        assert (claimed.run.owner_id, claimed.run.owner_epoch) == (engine.engine_id, 1)
        # an external event with a fence claims nothing
        other = await new_run(world, started=True)
        raised = EventRaised(run_id=other.run_id, name="x")
        result = await world.append(other.run_id, [raised], fence=fence)
        assert result.run.owner_id is None

    async def test_a_dead_engine_cannot_claim(self, world: World) -> None:
        dead = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        await world.deregister_engine(dead.engine_id)
        run = await new_run(world)
        with pytest.raises(OwnershipLostError):
            await world.append(
                run.run_id,
                [RunStarted(run_id=run.run_id)],
                fence=Fence(engine_id=dead.engine_id, epoch=0),
            )
        run_id = new_id("wrun")
        with pytest.raises(OwnershipLostError):
            await world.append(
                run_id,
                [RunCreated(run_id=run_id, workflow_name="wf", input=payload(1))],
                fence=Fence(engine_id=dead.engine_id, epoch=0),
            )
        with pytest.raises(OwnershipLostError):
            await world.claim_orphans(dead.engine_id, workflows=["wf"], limit=10)
        assert (await world.get_run(run.run_id)).owner_id is None

    # -- takeover ----------------------------------------------------------------------------

    async def test_claim_orphans_takes_unowned_active_runs_of_its_workflows(
        self, world: World
    ) -> None:
        engine = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        pending = await new_run(world)
        running = await new_run(world, started=True)
        await new_run(world, workflow_name="other")
        done = await new_run(world, started=True)
        await world.append(done.run_id, [RunCompleted(run_id=done.run_id, output=payload(1))])
        paused = await new_run(world, started=True)
        await world.append(paused.run_id, [RunSuspended(run_id=paused.run_id)])
        claimed = await world.claim_orphans(engine.engine_id, workflows=["wf"], limit=100)
        assert [r.run_id for r in claimed] == [pending.run_id, running.run_id]  # oldest first
        assert all((r.owner_id, r.owner_epoch) == (engine.engine_id, 1) for r in claimed)
        stored = await world.get_run(running.run_id)
        assert (stored.owner_id, stored.owner_epoch) == (engine.engine_id, 1)
        assert await world.claim_orphans(engine.engine_id, workflows=["wf"], limit=100) == []
        # a suspended run is claimed once it is resumed
        await world.append(paused.run_id, [RunResumed(run_id=paused.run_id)])
        [resumed] = await world.claim_orphans(engine.engine_id, workflows=["wf"], limit=100)
        assert resumed.run_id == paused.run_id

    async def test_claim_orphans_honours_its_limit(self, world: World) -> None:
        engine = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        runs = [await new_run(world, started=True) for _ in range(5)]
        first = await world.claim_orphans(engine.engine_id, workflows=["wf"], limit=2)
        rest = await world.claim_orphans(engine.engine_id, workflows=["wf"], limit=10)
        assert [r.run_id for r in first + rest] == [r.run_id for r in runs]

    async def test_two_sweepers_never_claim_one_run(self, world: World) -> None:
        one = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        two = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        runs = {(await new_run(world, started=True)).run_id for _ in range(20)}
        claims: list[list[WorkflowRun]] = list(
            await asyncio.gather(
                *(
                    world.claim_orphans(engine.engine_id, workflows=["wf"], limit=3)
                    for _ in range(5)
                    for engine in (one, two)
                )
            )
        )
        claimed = [r.run_id for batch in claims for r in batch]
        assert len(claimed) == len(set(claimed)) == len(runs)

    async def test_a_clean_exit_releases_its_runs(self, world: World) -> None:
        leaving = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        staying = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, leaving.engine_id)
        done = await _owned_run(world, leaving.engine_id)
        await world.append(
            done.run_id, [RunCompleted(run_id=done.run_id, output=payload(1))], fence=_fence(done)
        )
        # while its owner is live a run is not an orphan
        assert await world.claim_orphans(staying.engine_id, workflows=["wf"], limit=10) == []
        assert await world.deregister_engine(leaving.engine_id) == 1
        released = await world.get_run(run.run_id)
        assert (released.owner_id, released.owner_epoch) == (None, 1)
        [claimed] = await world.claim_orphans(staying.engine_id, workflows=["wf"], limit=10)
        assert (claimed.run_id, claimed.owner_id) == (run.run_id, staying.engine_id)
        assert claimed.owner_epoch == 2

    async def test_release_runs(self, world: World) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        other = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        mine = await _owned_run(world, owner.engine_id)
        theirs = await _owned_run(world, other.engine_id)
        released = await world.release_runs(owner.engine_id, [mine.run_id, theirs.run_id])
        assert released == 1
        assert (await world.get_run(mine.run_id)).owner_id is None
        assert (await world.get_run(theirs.run_id)).owner_id == other.engine_id

    async def test_a_dead_engines_runs_are_taken_over_and_it_is_fenced_off(
        self, world: World
    ) -> None:
        zombie = await world.register_engine(workflows=["wf"], ttl=_SHORT_TTL)
        survivor = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        run = await _owned_run(world, zombie.engine_id)
        await asyncio.sleep(_EXPIRED)
        [claimed] = await world.claim_orphans(survivor.engine_id, workflows=["wf"], limit=10)
        assert (claimed.owner_id, claimed.owner_epoch) == (survivor.engine_id, 2)
        # the zombie wakes up: its decisions are refused, its finished attempt's result is kept
        with pytest.raises(RunOwnedElsewhereError) as refused:
            await world.append(
                run.run_id,
                [StepStarted(run_id=run.run_id, correlation_id="s1")],
                fence=_fence(run),
            )
        assert refused.value.owner_id == survivor.engine_id
        with pytest.raises(OwnershipLostError):
            await world.heartbeat(zombie.engine_id)
        result = await world.append(
            run.run_id,
            [StepCompleted(run_id=run.run_id, correlation_id="s1", result=payload("late"))],
            fence=_fence(run),
        )
        assert result.run.owner_id == survivor.engine_id
        await world.append(
            run.run_id,
            [RunCompleted(run_id=run.run_id, output=payload("ok"))],
            fence=_fence(claimed),
        )

    # -- the queue hands work to the engines that have it -------------------------------------

    async def test_lease_hands_a_message_only_to_a_consumer_serving_its_workflow(
        self, world: World
    ) -> None:
        def message(name: str | None) -> QueueMessage:
            return QueueMessage(kind="run", run_id=new_id("wrun"), workflow_name=name)

        a, b, anyone = message("a"), message("b"), message(None)
        for m in (a, b, anyone):
            await world.enqueue("runs", m)
        got = await world.lease("runs", lease_for=30, max_messages=10, workflows=["b"])
        assert [lease.message for lease in got] == [b, anyone]
        got = await world.lease("runs", lease_for=30, max_messages=10, workflows=["c"])
        assert got == []
        [lease] = await world.lease("runs", lease_for=30, max_messages=10)
        assert lease.message == a

    async def test_a_message_for_an_engine_goes_to_it_while_it_is_live(self, world: World) -> None:
        owner = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        other = await world.register_engine(workflows=["wf"], ttl=_LONG_TTL)
        message = QueueMessage(
            kind="run", run_id="wrun_x", workflow_name="wf", engine_id=owner.engine_id
        )
        await world.enqueue("runs", message)
        options: dict[str, Any] = {"lease_for": 30, "max_messages": 10, "workflows": ["wf"]}
        assert await world.lease("runs", engine_id=other.engine_id, **options) == []
        [lease] = await world.lease("runs", engine_id=owner.engine_id, **options)
        await world.nack(lease)
        await world.deregister_engine(owner.engine_id)  # gone: anyone serving "wf" takes it
        [lease] = await world.lease("runs", engine_id=other.engine_id, **options)
        assert lease.message == message
