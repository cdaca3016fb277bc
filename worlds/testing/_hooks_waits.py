"""Conformance tests of the write path for waits (sleeps) and hooks: completion, waking,
tokens, and what a run's end releases."""

from __future__ import annotations

import pytest

from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    InvalidEventError,
    NotFoundError,
    StepNotFoundError,
)
from worldflow.worlds._events import (
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    RunCompleted,
    StepCreated,
    StepRetrying,
    StepWoken,
    WaitCompleted,
    WaitCreated,
    WaitWoken,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import World
from worldflow.worlds._records import (
    NULL,
    HookStatus,
    StepStatus,
    WaitStatus,
)
from worldflow.worlds.testing._base import (
    TERMINAL_EVENTS,
    SuiteBase,
    add_hook,
    add_wait,
    error_info,
    event_types,
    new_run,
    payload,
    start_step,
)

__all__ = ["HookWaitConformance"]


class HookWaitConformance(SuiteBase):
    """``append`` for waits and hooks: each completes once, a live token belongs to one hook,
    a run's end releases its hooks and waits."""

    # -- waits ---------------------------------------------------------------------------

    async def test_wait_completes_once(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        resume_at = run.created_at.replace(year=run.created_at.year + 1)
        created = await world.append(
            r, [WaitCreated(run_id=r, correlation_id="w1", resume_at=resume_at)]
        )
        [wait] = created.waits
        assert (wait.status, wait.resume_at) == (WaitStatus.WAITING, resume_at)
        done = await world.append(r, [WaitCompleted(run_id=r, correlation_id="w1")])
        [wait] = done.waits
        assert wait.status is WaitStatus.COMPLETED
        assert wait.completed_at is not None
        with pytest.raises(EntityConflictError):
            await world.append(r, [WaitCompleted(run_id=r, correlation_id="w1")])
        with pytest.raises(NotFoundError):
            await world.append(r, [WaitCompleted(run_id=r, correlation_id="never-created")])

    async def test_wait_woken_makes_a_sleep_due_now_and_nothing_else(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        later = run.created_at.replace(year=run.created_at.year + 1)
        await world.append(
            r,
            [
                WaitCreated(run_id=r, correlation_id="w1", resume_at=later),
                WaitCreated(run_id=r, correlation_id="w2", resume_at=later, event_name="go"),
            ],
        )
        woken = await world.append(r, [WaitWoken(run_id=r, correlation_id="w1", actor="ann")])
        [wait] = woken.waits
        [event] = woken.events
        assert wait.status is WaitStatus.WAITING  # the engine completes it, not the wake
        assert wait.resume_at == event.created_at
        assert isinstance(event, WaitWoken)
        assert event.actor == "ann"
        with pytest.raises(EntityConflictError):  # a wait for an event is not a sleep
            await world.append(r, [WaitWoken(run_id=r, correlation_id="w2")])
        with pytest.raises(NotFoundError):
            await world.append(r, [WaitWoken(run_id=r, correlation_id="never-created")])
        with pytest.raises(InvalidEventError):  # an actor is a one-line name
            await world.append(r, [WaitWoken(run_id=r, correlation_id="w1", actor="a\nb")])
        await world.append(r, [WaitCompleted(run_id=r, correlation_id="w1")])
        with pytest.raises(EntityConflictError):
            await world.append(r, [WaitWoken(run_id=r, correlation_id="w1")])
        waits = (await world.list_waits(run_id=r)).items
        assert [(w.wait_id, w.resume_at) for w in waits] == [
            ("w1", event.created_at),
            ("w2", later),
        ]

    async def test_step_woken_only_cuts_a_backoff_short(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        s = await start_step(world, r)
        with pytest.raises(EntityConflictError):  # running
            await world.append(r, [StepWoken(run_id=r, correlation_id=s)])
        later = run.created_at.replace(year=run.created_at.year + 1)
        await world.append(
            r,
            [StepRetrying(run_id=r, correlation_id=s, error=error_info(), retry_after=later)],
        )
        woken = await world.append(r, [StepWoken(run_id=r, correlation_id=s, actor="bo")])
        [step] = woken.steps
        assert step.status is StepStatus.PENDING
        assert step.retry_after is None
        assert step.output == NULL  # no result: the next attempt still runs the code
        with pytest.raises(EntityConflictError):  # no longer backing off
            await world.append(r, [StepWoken(run_id=r, correlation_id=s)])
        fresh = new_id("step")
        await world.append(
            r, [StepCreated(run_id=r, correlation_id=fresh, step_name="s", input=payload(1))]
        )
        with pytest.raises(EntityConflictError):  # never attempted
            await world.append(r, [StepWoken(run_id=r, correlation_id=fresh)])
        with pytest.raises(StepNotFoundError):
            await world.append(r, [StepWoken(run_id=r, correlation_id="step_missing")])

    # -- hooks ---------------------------------------------------------------------------

    async def test_hook_received_and_disposed(self, world: World) -> None:
        run = await new_run(world, started=True)
        r, token = run.run_id, new_id("hook")
        created = await world.append(
            r,
            [
                HookCreated(
                    run_id=r,
                    correlation_id="h1",
                    token=token,
                    metadata=payload({"m": 1}),
                    is_webhook=True,
                )
            ],
        )
        [hook] = created.hooks
        assert (hook.status, hook.token, hook.is_webhook) == (HookStatus.ACTIVE, token, True)
        assert bytes(hook.metadata) == b'{"m":1}'
        assert await world.get_hook_by_token(token) == hook
        for n in (1, 2):
            received = await world.append(
                r, [HookReceived(run_id=r, correlation_id="h1", payload=payload(n))]
            )
            assert received.hooks[0].received_count == n
        disposed = await world.append(r, [HookDisposed(run_id=r, correlation_id="h1")])
        assert disposed.hooks[0].status is HookStatus.DISPOSED
        assert disposed.hooks[0].disposed_at is not None
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token(token)
        with pytest.raises(HookNotFoundError):
            await world.append(r, [HookReceived(run_id=r, correlation_id="h1", payload=NULL)])
        with pytest.raises(HookNotFoundError):
            await world.append(r, [HookDisposed(run_id=r, correlation_id="h1")])

    async def test_hook_events_on_a_missing_hook(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        with pytest.raises(HookNotFoundError):
            await world.append(r, [HookReceived(run_id=r, correlation_id="nope", payload=NULL)])
        with pytest.raises(HookNotFoundError):
            await world.append(r, [HookDisposed(run_id=r, correlation_id="nope")])
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token("no-such-token")

    async def test_a_live_token_belongs_to_one_hook(self, world: World) -> None:
        token = new_id("hook")
        a = await new_run(world, started=True)
        b = await new_run(world, started=True)
        first = await add_hook(world, a.run_id, token, "h-a")
        owner = first.hooks[0]
        refused = await add_hook(world, b.run_id, token, "h-b")
        [conflict] = refused.events
        assert isinstance(conflict, HookConflict)
        assert (conflict.token, conflict.correlation_id) == (token, "h-b")
        assert conflict.conflicting_run_id == a.run_id
        assert conflict.seq == refused.run.last_seq
        assert refused.hooks == []
        assert await world.get_hook_by_token(token) == owner
        assert (await world.list_hooks(run_id=b.run_id)).items == []
        logged = (await world.list_events(b.run_id)).items[-1]
        assert isinstance(logged, HookConflict)
        # The refused correlation id is used up; the same run conflicts with itself too.
        with pytest.raises(EntityConflictError):
            await add_hook(world, b.run_id, new_id("hook"), "h-b")
        again = await add_hook(world, a.run_id, token, "h-a2")
        assert event_types(again.events) == ["hook_conflict"]
        # Disposing frees the token for anyone.
        await world.append(a.run_id, [HookDisposed(run_id=a.run_id, correlation_id="h-a")])
        taken = await add_hook(world, b.run_id, token, "h-b2")
        assert event_types(taken.events) == ["hook_created"]
        assert (await world.get_hook_by_token(token)).run_id == b.run_id

    async def test_token_conflict_inside_one_batch(self, world: World) -> None:
        run = await new_run(world, started=True)
        r, token = run.run_id, new_id("hook")
        result = await world.append(
            r,
            [
                HookCreated(run_id=r, correlation_id="h1", token=token),
                HookCreated(run_id=r, correlation_id="h2", token=token),
            ],
        )
        assert event_types(result.events) == ["hook_created", "hook_conflict"]
        assert (await world.get_hook_by_token(token)).hook_id == "h1"

    @pytest.mark.parametrize("outcome", sorted(TERMINAL_EVENTS))
    async def test_a_terminal_run_releases_its_hooks_and_waits(
        self, world: World, outcome: str
    ) -> None:
        run = await new_run(world, started=True)
        r, token = run.run_id, new_id("hook")
        await add_hook(world, r, token, "h1")
        wait_id = await add_wait(world, r)
        result = await world.append(r, [TERMINAL_EVENTS[outcome](r)])
        assert [h.status for h in result.hooks] == [HookStatus.DISPOSED]
        assert [w.status for w in result.waits] == [WaitStatus.COMPLETED]
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token(token)
        [hook] = (await world.list_hooks(run_id=r)).items
        assert hook.status is HookStatus.DISPOSED
        [wait] = (await world.list_waits(run_id=r)).items
        assert (wait.wait_id, wait.status) == (wait_id, WaitStatus.COMPLETED)
        other = await new_run(world, started=True)
        reused = await add_hook(world, other.run_id, token)
        assert event_types(reused.events) == ["hook_created"]

    async def test_hooks_created_in_the_ending_batch_are_released(self, world: World) -> None:
        run = await new_run(world, started=True)
        r, token = run.run_id, new_id("hook")
        result = await world.append(
            r,
            [
                HookCreated(run_id=r, correlation_id="h", token=token),
                RunCompleted(run_id=r, output=NULL),
            ],
        )
        assert [h.status for h in result.hooks] == [HookStatus.DISPOSED]
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token(token)
