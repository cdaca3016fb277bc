"""Conformance tests of the write path: every rule ``append`` enforces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    InvalidEventError,
    RunNotFoundError,
    RunTerminalError,
    StepNotFoundError,
)
from worldflow.worlds._events import (
    AnyEvent,
    EventRaised,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
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
    WaitCompleted,
    WaitCreated,
    WaitWoken,
    decode_event,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import World
from worldflow.worlds._records import (
    NULL,
    RunStatus,
    StepStatus,
)
from worldflow.worlds.testing._base import (
    TERMINAL_EVENTS,
    SuiteBase,
    error_info,
    event_types,
    new_run,
    payload,
    start_step,
)

__all__ = ["LogConformance"]

# Everything a terminal run must refuse (a step id "s" that is pending, a hook "h", a wait "w").
REFUSED_ON_TERMINAL: dict[str, Callable[[str], AnyEvent]] = {
    "run_started": lambda r: RunStarted(run_id=r),
    "run_completed": lambda r: RunCompleted(run_id=r, output=NULL),
    "run_failed": lambda r: RunFailed(run_id=r, error=error_info()),
    "run_suspended": lambda r: RunSuspended(run_id=r),
    "run_resumed": lambda r: RunResumed(run_id=r),
    "run_stalled": lambda r: RunStalled(run_id=r, error=error_info()),
    "run_unstalled": lambda r: RunUnstalled(run_id=r),
    "step_created": lambda r: StepCreated(
        run_id=r, correlation_id="new-step", step_name="s", input=NULL
    ),
    "step_started": lambda r: StepStarted(run_id=r, correlation_id="s"),
    "pending step_completed": lambda r: StepCompleted(run_id=r, correlation_id="s", result=NULL),
    "wait_created": lambda r: WaitCreated(run_id=r, correlation_id="new-wait"),
    "wait_completed": lambda r: WaitCompleted(run_id=r, correlation_id="w"),
    "wait_woken": lambda r: WaitWoken(run_id=r, correlation_id="w"),
    "hook_created": lambda r: HookCreated(run_id=r, correlation_id="new-hook", token="t2"),
    "hook_received": lambda r: HookReceived(run_id=r, correlation_id="h", payload=NULL),
    "hook_disposed": lambda r: HookDisposed(run_id=r, correlation_id="h"),
    "event_raised": lambda r: EventRaised(run_id=r, name="go"),
    "state_updated": lambda r: StateUpdated(run_id=r, state=NULL),
}


class LogConformance(SuiteBase):
    """``append``: creation, run and step life cycles, terminal rules, batches, malformed input
    (waits and hooks: :class:`HookWaitConformance`)."""

    # -- creation ------------------------------------------------------------------------

    async def test_run_created_makes_a_pending_run_and_stamps_the_event(self, world: World) -> None:
        run_id = new_id("wrun")
        created = RunCreated(
            run_id=run_id,
            workflow_name="orders:checkout",
            input=payload({"order": 7}),
            resource_id="user-9",
            metadata={"region": "eu"},
            initial_state=payload({"n": 0}),
            parent_run_id="wrun_parent",
            seq=99,  # the world stamps seq, event id and time itself
            event_id="evnt_mine",
        )
        result = await world.append(run_id, [created])
        run = result.run
        assert run.run_id == run_id
        assert run.status is RunStatus.PENDING
        assert run.workflow_name == "orders:checkout"
        assert bytes(run.input) == b'{"order":7}'
        assert run.resource_id == "user-9"
        assert run.metadata == {"region": "eu"}
        assert bytes(run.state) == b'{"n":0}'
        assert run.parent_run_id == "wrun_parent"
        assert run.last_seq == 1
        assert run.started_at is None
        assert run.completed_at is None
        assert bytes(run.output) == b"null"
        [event] = result.events
        assert isinstance(event, RunCreated)
        assert event.seq == 1
        assert event.event_id.startswith("evnt_")
        assert event.event_id != "evnt_mine"
        assert event.created_at == run.created_at
        assert event.created_at.tzinfo is not None
        assert await world.get_run(run_id) == run

    async def test_second_run_created_conflicts(self, world: World) -> None:
        run = await new_run(world)
        with pytest.raises(EntityConflictError):
            await new_run(world, run.run_id, workflow_name="other")
        assert (await world.get_run(run.run_id)).workflow_name == "wf"
        assert (await world.get_run(run.run_id)).last_seq == 1

    @pytest.mark.parametrize("kind", ["step_created", "wait_created", "hook_created"])
    async def test_second_creation_of_a_correlation_id_conflicts(
        self, world: World, kind: str
    ) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        make: dict[str, Callable[[str], AnyEvent]] = {
            "step_created": lambda t: StepCreated(
                run_id=r, correlation_id="c1", step_name="s", input=NULL
            ),
            "wait_created": lambda t: WaitCreated(run_id=r, correlation_id="c1"),
            "hook_created": lambda t: HookCreated(run_id=r, correlation_id="c1", token=t),
        }
        await world.append(r, [make[kind]("token-a")])
        with pytest.raises(EntityConflictError):
            await world.append(r, [make[kind]("token-b")])
        assert (await world.get_run(r)).last_seq == 3

    async def test_events_for_an_unknown_run_raise_run_not_found(self, world: World) -> None:
        events: list[AnyEvent] = [
            RunStarted(run_id="nope"),
            StepCreated(run_id="nope", correlation_id="s", step_name="s", input=NULL),
            HookCreated(run_id="nope", correlation_id="h", token="t"),
            RunCancelled(run_id="nope"),
        ]
        for event in events:
            with pytest.raises(RunNotFoundError):
                await world.append("nope", [event])
        with pytest.raises(RunNotFoundError):
            await world.append("nope", [])

    # -- run life cycle ------------------------------------------------------------------

    async def test_run_started_is_idempotent_while_running(self, world: World) -> None:
        run = await new_run(world)
        first = await world.append(run.run_id, [RunStarted(run_id=run.run_id)])
        assert first.run.status is RunStatus.RUNNING
        assert first.run.started_at is not None
        assert event_types(first.events) == ["run_started"]
        again = await world.append(run.run_id, [RunStarted(run_id=run.run_id)])
        assert again.events == []
        assert again.run.status is RunStatus.RUNNING
        assert again.run.started_at == first.run.started_at
        assert again.run.last_seq == 2

    @pytest.mark.parametrize("outcome", sorted(TERMINAL_EVENTS))
    async def test_terminal_events_set_the_outcome(self, world: World, outcome: str) -> None:
        run = await new_run(world, started=True)
        result = await world.append(run.run_id, [TERMINAL_EVENTS[outcome](run.run_id)])
        done = result.run
        assert done.status == RunStatus(outcome)
        assert done.status.is_terminal
        assert done.completed_at is not None
        assert done.completed_at >= done.created_at
        if outcome == "completed":
            assert bytes(done.output) == b'"done"'
        if outcome == "failed":
            assert done.error == error_info()
        if outcome == "cancelled":
            assert done.cancel_reason == "stop"
        assert await world.get_run(run.run_id) == done

    async def test_cancelling_a_cancelled_run_is_a_no_op(self, world: World) -> None:
        run = await new_run(world, started=True)
        first = await world.append(run.run_id, [RunCancelled(run_id=run.run_id, reason="a")])
        again = await world.append(run.run_id, [RunCancelled(run_id=run.run_id, reason="b")])
        assert again.events == []
        assert again.run == first.run
        assert again.run.cancel_reason == "a"

    @pytest.mark.parametrize("outcome", sorted(TERMINAL_EVENTS))
    @pytest.mark.parametrize("refused", sorted(REFUSED_ON_TERMINAL))
    async def test_terminal_run_refuses_everything_else(
        self, world: World, outcome: str, refused: str
    ) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        await world.append(
            r,
            [
                StepCreated(run_id=r, correlation_id="s", step_name="s", input=NULL),
                HookCreated(run_id=r, correlation_id="h", token=new_id("hook")),
                WaitCreated(run_id=r, correlation_id="w"),
                TERMINAL_EVENTS[outcome](r),
            ],
        )
        before = await world.get_run(r)
        with pytest.raises(RunTerminalError):
            await world.append(r, [REFUSED_ON_TERMINAL[refused](r)])
        assert await world.get_run(r) == before

    @pytest.mark.parametrize("outcome", ["completed", "failed"])
    async def test_cancel_after_another_ending_is_refused(self, world: World, outcome: str) -> None:
        run = await new_run(world, started=True)
        await world.append(run.run_id, [TERMINAL_EVENTS[outcome](run.run_id)])
        with pytest.raises(RunTerminalError):
            await world.append(run.run_id, [RunCancelled(run_id=run.run_id)])

    @pytest.mark.parametrize("result_kind", ["step_completed", "step_failed"])
    async def test_a_running_step_may_record_its_result_after_the_run_ended(
        self, world: World, result_kind: str
    ) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        step_id = await start_step(world, r)
        await world.append(r, [RunCancelled(run_id=r)])
        result_event: AnyEvent = (
            StepCompleted(run_id=r, correlation_id=step_id, result=payload(42))
            if result_kind == "step_completed"
            else StepFailed(run_id=r, correlation_id=step_id, error=error_info())
        )
        result = await world.append(r, [result_event])
        assert event_types(result.events) == [result_kind]
        step = await world.get_step(r, step_id)
        assert step.status.is_terminal
        assert result.run.status is RunStatus.CANCELLED
        # Only once: the step is now terminal, so a second result is refused.
        with pytest.raises(RunTerminalError):
            await world.append(
                r, [StepCompleted(run_id=r, correlation_id=step_id, result=payload(43))]
            )
        # And nothing else rides along with it.
        with pytest.raises(RunTerminalError):
            await world.append(r, [EventRaised(run_id=r, name="x")])

    async def test_suspend_and_resume(self, world: World) -> None:
        run = await new_run(world)
        r = run.run_id
        suspended = await world.append(r, [RunSuspended(run_id=r, reason="ops")])
        assert suspended.run.status is RunStatus.SUSPENDED
        resumed = await world.append(r, [RunResumed(run_id=r)])
        assert resumed.run.status is RunStatus.PENDING  # it had never started
        await world.append(r, [RunStarted(run_id=r), RunSuspended(run_id=r)])
        resumed = await world.append(r, [RunResumed(run_id=r)])
        assert resumed.run.status is RunStatus.RUNNING
        cancelled = await world.append(r, [RunSuspended(run_id=r), RunCancelled(run_id=r)])
        assert cancelled.run.status is RunStatus.CANCELLED

    async def test_stall_and_unstall(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        error = error_info()
        stalled = await world.append(r, [RunStalled(run_id=r, error=error, position=3)])
        assert stalled.run.status is RunStatus.STALLED
        assert stalled.run.error == error
        assert [x.run_id for x in (await world.list_runs(status=RunStatus.STALLED)).items] == [r]
        # Outside events still land on a stalled run (they wait for code that replays it).
        await world.append(r, [EventRaised(run_id=r, name="go")])
        unstalled = await world.append(r, [RunUnstalled(run_id=r)])
        assert unstalled.run.status is RunStatus.RUNNING
        assert unstalled.run.error is None
        again = await world.append(r, [RunUnstalled(run_id=r)])  # not stalled: a no-op
        assert again.events == []
        await world.append(r, [RunStalled(run_id=r, error=error)])
        failed = await world.append(r, [RunFailed(run_id=r, error=error)])
        assert failed.run.status is RunStatus.FAILED

    async def test_state_updated_and_event_raised(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        result = await world.append(
            r,
            [
                StateUpdated(run_id=r, state=payload({"step": 2})),
                EventRaised(run_id=r, name="shipped", payload=payload([1])),
            ],
        )
        assert bytes(result.run.state) == b'{"step":2}'
        assert event_types(result.events) == ["state_updated", "event_raised"]
        raised = result.events[1]
        assert isinstance(raised, EventRaised)
        assert raised.name == "shipped"
        assert bytes(raised.payload) == b"[1]"

    # -- steps ---------------------------------------------------------------------------

    async def test_step_life_cycle(self, world: World) -> None:
        run = await new_run(world, started=True)
        r, s = run.run_id, new_id("step")
        created = await world.append(
            r, [StepCreated(run_id=r, correlation_id=s, step_name="charge", input=payload(5))]
        )
        [step] = created.steps
        assert (step.status, step.attempt, step.step_name) == (StepStatus.PENDING, 0, "charge")
        assert bytes(step.input) == b"5"
        started = (await world.append(r, [StepStarted(run_id=r, correlation_id=s)])).steps[0]
        assert (started.status, started.attempt) == (StepStatus.RUNNING, 1)
        assert started.started_at is not None
        retry_at = started.started_at.replace(year=started.started_at.year + 1)
        retrying = await world.append(
            r,
            [
                StepRetrying(
                    run_id=r, correlation_id=s, error=error_info("flaky"), retry_after=retry_at
                )
            ],
        )
        step = retrying.steps[0]
        assert (step.status, step.retry_after) == (StepStatus.PENDING, retry_at)
        assert step.error == error_info("flaky")
        step = (await world.append(r, [StepStarted(run_id=r, correlation_id=s)])).steps[0]
        assert (step.status, step.attempt) == (StepStatus.RUNNING, 2)
        assert step.started_at == started.started_at  # the first start
        step = (
            await world.append(
                r, [StepSuspended(run_id=r, correlation_id=s, payload=payload("approve?"))]
            )
        ).steps[0]
        assert step.status is StepStatus.SUSPENDED
        assert bytes(step.suspend_payload) == b'"approve?"'
        with pytest.raises(EntityConflictError):  # a suspended step needs step_resumed first
            await world.append(r, [StepStarted(run_id=r, correlation_id=s)])
        step = (
            await world.append(r, [StepResumed(run_id=r, correlation_id=s, data=payload(True))])
        ).steps[0]
        assert step.status is StepStatus.PENDING
        assert bytes(step.resume_data) == b"true"
        await world.append(r, [StepStarted(run_id=r, correlation_id=s)])
        done = await world.append(r, [StepCompleted(run_id=r, correlation_id=s, result=payload(9))])
        step = done.steps[0]
        assert (step.status, step.attempt) == (StepStatus.COMPLETED, 3)
        assert bytes(step.output) == b"9"
        assert step.completed_at is not None
        assert await world.get_step(r, s) == step

    async def test_interrupted_and_lost_attempts_are_counted_apart(self, world: World) -> None:
        run = await new_run(world, started=True)
        r, s = run.run_id, new_id("step")
        await world.append(
            r, [StepCreated(run_id=r, correlation_id=s, step_name="charge", input=payload(5))]
        )
        interrupted = StepInterrupted(run_id=r, correlation_id=s, reason="the engine stopped")
        assert (await world.append(r, [interrupted])).events == []  # not running: a no-op
        step = (await world.append(r, [StepStarted(run_id=r, correlation_id=s)])).steps[0]
        assert (step.attempt, step.interrupted_attempts, step.lost_attempts) == (1, 0, 0)
        step = (await world.append(r, [interrupted])).steps[0]
        assert (step.status, step.attempt, step.interrupted_attempts) == (StepStatus.PENDING, 1, 1)
        step = (await world.append(r, [StepStarted(run_id=r, correlation_id=s)])).steps[0]
        assert (step.attempt, step.interrupted_attempts, step.lost_attempts) == (2, 1, 0)
        # Started again with no outcome recorded: the attempt before was lost to a crash.
        step = (await world.append(r, [StepStarted(run_id=r, correlation_id=s)])).steps[0]
        assert (step.attempt, step.interrupted_attempts, step.lost_attempts) == (3, 1, 1)
        done = await world.append(r, [StepCompleted(run_id=r, correlation_id=s, result=payload(9))])
        with pytest.raises(EntityConflictError):  # the result is in: nothing to interrupt
            await world.append(r, [interrupted])
        step = done.steps[0]
        assert (step.status, step.interrupted_attempts, step.lost_attempts) == (
            StepStatus.COMPLETED,
            1,
            1,
        )
        assert await world.get_step(r, s) == step

    @pytest.mark.parametrize("second", ["step_completed", "step_failed", "step_started"])
    async def test_first_completion_wins(self, world: World, second: str) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        s = await start_step(world, r)
        await world.append(r, [StepCompleted(run_id=r, correlation_id=s, result=payload("first"))])
        events: dict[str, AnyEvent] = {
            "step_completed": StepCompleted(run_id=r, correlation_id=s, result=payload("second")),
            "step_failed": StepFailed(run_id=r, correlation_id=s, error=error_info()),
            "step_started": StepStarted(run_id=r, correlation_id=s),
        }
        with pytest.raises(EntityConflictError):
            await world.append(r, [events[second]])
        step = await world.get_step(r, s)
        assert step.status is StepStatus.COMPLETED
        assert bytes(step.output) == b'"first"'

    async def test_concurrent_completions_record_exactly_one(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        s = await start_step(world, r)

        async def complete(n: int) -> bool:
            try:
                await world.append(
                    r, [StepCompleted(run_id=r, correlation_id=s, result=payload(n))]
                )
            except EntityConflictError:
                return False
            return True

        wins = await asyncio.gather(*(complete(n) for n in range(20)))
        assert sum(wins) == 1
        events = (await world.list_events(r)).items
        assert event_types(events).count("step_completed") == 1

    async def test_step_events_need_the_step(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        events: list[AnyEvent] = [
            StepStarted(run_id=r, correlation_id="missing"),
            StepCompleted(run_id=r, correlation_id="missing", result=NULL),
            StepFailed(run_id=r, correlation_id="missing", error=error_info()),
            StepRetrying(run_id=r, correlation_id="missing", error=error_info()),
            StepSuspended(run_id=r, correlation_id="missing"),
            StepResumed(run_id=r, correlation_id="missing"),
        ]
        for event in events:
            with pytest.raises(StepNotFoundError):
                await world.append(r, [event])

    async def test_only_a_suspended_step_resumes(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        s = await start_step(world, r)
        with pytest.raises(EntityConflictError):
            await world.append(r, [StepResumed(run_id=r, correlation_id=s, data=NULL)])

    # -- seq and batches -----------------------------------------------------------------

    async def test_seq_is_dense_under_concurrent_appends(self, world: World) -> None:
        runs = [(await new_run(world, started=True)).run_id for _ in range(3)]

        async def append_many(run_id: str, worker: int) -> None:
            for n in range(6):
                await world.append(
                    run_id, [EventRaised(run_id=run_id, name=f"w{worker}-{n}")] * (1 + n % 2)
                )

        await asyncio.gather(*(append_many(r, w) for r in runs for w in range(20)))
        for run_id in runs:
            events = (await world.list_events(run_id)).items
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert len(events) == 2 + 20 * 9
            assert len({e.event_id for e in events}) == len(events)
            assert (await world.get_run(run_id)).last_seq == len(events)

    async def test_a_refused_batch_stores_nothing(self, world: World) -> None:
        run = await new_run(world, started=True)
        r, token = run.run_id, new_id("hook")
        await world.append(
            r, [StepCreated(run_id=r, correlation_id="s1", step_name="s", input=NULL)]
        )
        before = await world.get_run(r)
        with pytest.raises(EntityConflictError):
            await world.append(
                r,
                [
                    StepCreated(run_id=r, correlation_id="s2", step_name="s", input=NULL),
                    HookCreated(run_id=r, correlation_id="h1", token=token),
                    WaitCreated(run_id=r, correlation_id="w1"),
                    StateUpdated(run_id=r, state=payload(1)),
                    RunCompleted(run_id=r, output=NULL),
                    StepCreated(run_id=r, correlation_id="s1", step_name="s", input=NULL),
                ],
            )
        assert await world.get_run(r) == before
        assert len((await world.list_events(r)).items) == before.last_seq
        assert [s.step_id for s in (await world.list_steps(r)).items] == ["s1"]
        assert (await world.list_hooks(run_id=r)).items == []
        assert (await world.list_waits(run_id=r)).items == []
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token(token)
        # The ids of the refused batch are still free.
        ok = await world.append(
            r,
            [
                StepCreated(run_id=r, correlation_id="s2", step_name="s", input=NULL),
                HookCreated(run_id=r, correlation_id="h1", token=token),
            ],
        )
        assert [e.seq for e in ok.events] == [before.last_seq + 1, before.last_seq + 2]

    async def test_a_batch_may_create_and_drive_a_run(self, world: World) -> None:
        r = new_id("wrun")
        result = await world.append(
            r,
            [
                RunCreated(run_id=r, workflow_name="wf", input=NULL),
                RunStarted(run_id=r),
                StepCreated(run_id=r, correlation_id="s", step_name="s", input=NULL),
            ],
        )
        assert [e.seq for e in result.events] == [1, 2, 3]
        assert result.run.status is RunStatus.RUNNING
        bad = new_id("wrun")
        with pytest.raises(StepNotFoundError):
            await world.append(
                bad,
                [
                    RunCreated(run_id=bad, workflow_name="wf", input=NULL),
                    StepStarted(run_id=bad, correlation_id="missing"),
                ],
            )
        with pytest.raises(RunNotFoundError):  # the refused batch did not create the run
            await world.get_run(bad)

    # -- malformed input -----------------------------------------------------------------

    async def test_malformed_events_are_refused_naming_the_field(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        before = await world.get_run(r)
        with pytest.raises(InvalidEventError, match="run"):
            await world.append(r, [RunStarted(run_id="someone-else")])
        with pytest.raises(InvalidEventError, match="correlation_id"):
            await world.append(r, [StepStarted(run_id=r, correlation_id="")])
        missing: Any = msgspec.structs.replace(
            StepCreated(run_id=r, correlation_id="x", step_name="s", input=NULL),
            correlation_id=None,
        )
        with pytest.raises(InvalidEventError, match="correlation_id"):
            await world.append(r, [missing])
        not_events: list[Any] = [{"type": "run_started", "run_id": r}, "run_started", None, 3]
        for thing in not_events:
            with pytest.raises(InvalidEventError):
                await world.append(r, [thing])
        with pytest.raises(InvalidEventError, match="hook_conflict"):
            await world.append(r, [HookConflict(run_id=r, correlation_id="h", token="t")])
        # A malformed event anywhere in a batch refuses the whole batch.
        with pytest.raises(InvalidEventError):
            await world.append(r, [EventRaised(run_id=r, name="ok"), RunStarted(run_id="x")])
        assert await world.get_run(r) == before

    def test_decode_event_names_the_wrong_field(self) -> None:
        with pytest.raises(InvalidEventError, match="step_name"):
            decode_event(
                b'{"type":"step_created","run_id":"r","correlation_id":"s",'
                b'"step_name":5,"input":null}'
            )
        with pytest.raises(InvalidEventError, match="run_id"):
            decode_event(b'{"type":"run_started"}')
        with pytest.raises(InvalidEventError, match="type"):
            decode_event(b'{"type":"run_exploded","run_id":"r"}')
        with pytest.raises(InvalidEventError):
            decode_event(b'{"type": "run_started", "run_id": ')
