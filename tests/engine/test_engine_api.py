"""The runtime API on a memory world: starting, reading, listing, steering runs, and every
error it raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.engine.runtime import WAIT, running, types_of, wait_for_type
from worldflow import (
    ConfigurationError,
    Engine,
    EngineNotRunningError,
    EntityConflictError,
    HookNotFoundError,
    RunNotFoundError,
    RunNotTerminalError,
    RunTerminalError,
    SerializationError,
    StepNotFoundError,
    WebhookRequest,
    WebhookResponse,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowFunction,
    WorkflowNotRegisteredError,
    WorldError,
    api,
    create_hook,
    create_webhook,
    get_state,
    get_writable,
    set_state,
    step,
    workflow,
)
from worldflow.worlds import FileWorld, MemoryWorld, RunStatus

pytestmark = pytest.mark.anyio


@step
async def double(x: int) -> int:
    """Twice ``x``."""
    return 2 * x


@workflow
async def doubler(x: int, label: str = "n") -> dict[str, int]:
    """Double a number in a step."""
    return {label: await double(x)}


@workflow
async def parked(token: str) -> object:
    """Wait on the hook ``token``; return its payload."""
    return await create_hook(token=token)


@workflow
async def broken(message: str) -> None:
    """Fail with ValueError(message)."""
    raise ValueError(message)


@workflow
async def counter(steps: int) -> int:
    """Add ``steps`` to the state's count, one set_state per step."""
    for _ in range(steps):
        state = get_state()
        set_state({"count": state["count"] + 1})
    return int(get_state()["count"])


@workflow
async def hooked_webhook() -> str:
    """Wait for one request on a webhook answering 200 "thanks"."""
    hook = create_webhook(respond_with=WebhookResponse(status=200, body=b"thanks"))
    request: WebhookRequest = await hook
    return request.text()


@workflow
async def plain_webhook() -> str:
    """Wait for one request on a webhook with the default response."""
    request: WebhookRequest = await create_webhook(metadata={"kind": "plain"})
    return request.method


@step
async def say_hi() -> str:
    await get_writable().write("hi")
    return "said"


@workflow
async def speaker_once() -> str:
    """Write one value to the run's stream."""
    return await say_hi()


def not_a_workflow(x: int) -> int:
    return x


@pytest.fixture
async def world() -> AsyncIterator[MemoryWorld]:
    world = MemoryWorld()
    yield world
    await world.aclose()


WORKFLOWS: list[WorkflowFunction[..., Any]] = [
    doubler,
    parked,
    broken,
    counter,
    hooked_webhook,
    plain_webhook,
]


async def test_start_returns_a_handle_and_the_result(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(doubler, 21, label="answer", run_id="r-1", resource_id="u-9")
        assert run.run_id == "r-1"
        assert await run.result(timeout=WAIT) == {"answer": 42}
        assert await run.status() is RunStatus.COMPLETED
        info = await run.info()
        assert info.input == {"x": 21, "label": "answer"}
        assert info.output == {"answer": 42}
        assert info.resource_id == "u-9"
        assert info.workflow_name == doubler.name
        assert info.started_at is not None
        assert info.completed_at is not None
        assert info.error is None
        assert await types_of(world, "r-1") == [
            "run_created",
            "run_started",
            "step_created",
            "step_started",
            "step_completed",
            "run_completed",
        ]


async def test_a_duplicate_run_id_is_a_conflict(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        await engine.start(doubler, 1, run_id="same")
        with pytest.raises(EntityConflictError, match="'same' already exists"):
            await engine.start(doubler, 2, run_id="same")
        assert await (await engine.get_run("same")).result(timeout=WAIT) == {"n": 2}


async def test_start_refuses_bad_workflows_and_arguments(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        with pytest.raises(WorkflowNotRegisteredError, match=r"no\.such:workflow"):
            await engine.start("no.such:workflow")
        with pytest.raises(WorkflowNotRegisteredError, match="not a workflow"):
            await engine.start(not_a_workflow, 1)
        with pytest.raises(SerializationError, match="cannot be recorded"):
            await engine.start(doubler, object())
        with pytest.raises(TypeError, match="missing a required argument"):
            await engine.start(doubler)
        with pytest.raises(TypeError, match="dict of str to str"):
            await engine.start(doubler, 1, metadata={"n": 1})  # type: ignore[dict-item]
        assert (await engine.list_runs()).items == []  # nothing was created


async def test_start_by_registered_name(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(doubler.name, 5)
        assert await run.result(timeout=WAIT) == {"n": 10}


async def test_get_run_of_an_unknown_run(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        with pytest.raises(RunNotFoundError):
            await engine.get_run("nope")


async def test_a_failed_run_raises_the_original_error_name(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(broken, "no luck")
        with pytest.raises(WorkflowFailedError, match="ValueError: no luck") as caught:
            await run.result(timeout=WAIT)
        assert caught.value.error_name == "ValueError"
        assert caught.value.run_id == run.run_id
        info = await run.info()
        assert info.status is RunStatus.FAILED
        assert info.error is not None
        assert info.error.message == "no luck"


async def test_result_times_out_without_ending_the_run(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(parked, "t-timeout")
        with pytest.raises(TimeoutError, match="did not finish within"):
            await run.result(timeout=0.05)
        assert await run.status() is RunStatus.RUNNING
        await engine.resume_hook("t-timeout", "late")
        assert await run.result(timeout=WAIT) == "late"


async def test_result_waits_first_and_reads_the_run_once(
    world: MemoryWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run.result() waits for the run's end before reading it: one get_run per result, not
    # one before the wait and one after (a read a database world pays per run).
    reads: list[str] = []
    get_run = world.get_run

    async def counted(run_id: str) -> Any:
        reads.append(run_id)
        return await get_run(run_id)

    monkeypatch.setattr(world, "get_run", counted)
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(parked, "t-once")
        await wait_for_type(run, "hook_created")
        reads.clear()
        waiter = asyncio.ensure_future(run.result(timeout=WAIT))
        await asyncio.sleep(0.01)
        await engine.resume_hook("t-once", "done")
        assert await waiter == "done"
        assert reads == [run.run_id]


async def test_result_of_an_ended_run_never_times_out(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(doubler, 3)
        assert await run.result(timeout=WAIT) == {"n": 6}
        assert await run.result(timeout=0) == {"n": 6}


async def test_cancel_ends_a_run_and_result_says_so(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(parked, "t-cancel")
        await wait_for_type(run, "hook_created")
        await run.cancel("not needed", output={"partial": True})
        with pytest.raises(WorkflowCancelledError, match="not needed"):
            await run.result(timeout=WAIT)
        info = await run.info()
        assert info.cancel_reason == "not needed"
        assert info.output == {"partial": True}
        await engine.cancel(run.run_id)  # cancelling again is a no-op
        with pytest.raises(HookNotFoundError):  # the run's hooks are gone
            await engine.resume_hook("t-cancel", 1)
        done = await engine.start(doubler, 1)
        await done.result(timeout=WAIT)
        with pytest.raises(RunTerminalError):
            await engine.cancel(done.run_id)


async def test_events_streams_the_log_live_until_the_end(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(parked, "t-events")
        seen: list[str] = []
        async for event in run.events():
            seen.append(event.type)
            if event.type == "hook_created":
                await engine.resume_hook("t-events", 7)
        assert seen[-1] == "run_completed"
        assert seen == await types_of(world, run.run_id)


async def test_list_runs_filters_and_pages(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        for i in range(5):
            run = await engine.start(
                doubler, i, resource_id=f"user-{i % 2}", metadata={"batch": "a" if i < 3 else "b"}
            )
            await run.result(timeout=WAIT)
        await engine.start(parked, "t-list")
        everyone = await engine.list_runs()
        assert len(everyone.items) == 6
        assert {r.workflow_name for r in everyone.items} == {doubler.name, parked.name}
        by_workflow = await engine.list_runs(workflow=doubler)
        assert len(by_workflow.items) == 5
        assert {r.input["x"] for r in by_workflow.items} == set(range(5))
        running_now = await engine.list_runs(status=RunStatus.RUNNING)
        assert [r.workflow_name for r in running_now.items] == [parked.name]
        user0 = await engine.list_runs(resource_id="user-0")
        assert sorted(r.input["x"] for r in user0.items) == [0, 2, 4]
        batch_b = await engine.list_runs(metadata={"batch": "b"})
        assert sorted(r.input["x"] for r in batch_b.items) == [3, 4]
        first = await engine.list_runs(workflow=doubler.name, limit=2)
        assert first.has_more
        assert first.cursor is not None
        rest = await engine.list_runs(workflow=doubler.name, limit=10, cursor=first.cursor)
        ids = [r.run_id for r in first.items + rest.items]
        assert len(ids) == len(set(ids)) == 5


async def test_list_workflows_describes_each_workflow(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        names = [w.name for w in await engine.list_workflows()]
        assert names == sorted(w.name for w in WORKFLOWS)  # read from the world's catalog
        info = await engine.get_workflow(doubler.name)
        assert info.engines == (engine.engine_id,)
        assert [p.name for p in info.parameters] == ["x", "label"]
        assert info.parameters[1].required is False
        assert info.parameters[1].default == "'n'"
        assert info.step_names == [double.name]
        assert info.doc == "Double a number in a step."
        with pytest.raises(WorkflowNotRegisteredError):
            await engine.get_workflow("nope")


async def test_purge_deletes_finished_runs_only(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        live = await engine.start(parked, "t-purge")
        await wait_for_type(live, "hook_created")
        with pytest.raises(RunNotTerminalError):
            await engine.purge(live.run_id)
        done = await engine.start(doubler, 3)
        await done.result(timeout=WAIT)
        await engine.purge(done.run_id)
        with pytest.raises(RunNotFoundError):
            await engine.get_run(done.run_id)
        assert not await done.exists()
        with pytest.raises(RunNotFoundError):
            await engine.purge("never-was")
        # A purged run's id is free again, and the new run is wrapped up like any other.
        again = await engine.start(speaker_once, run_id=done.run_id)
        assert await again.result(timeout=WAIT) == "said"
        assert [v async for v in again.readable()] == ["hi"]


async def test_rerun_starts_a_new_run_from_the_old_input(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        old = await engine.start(
            counter, 2, resource_id="u-1", metadata={"k": "v"}, initial_state={"count": 10}
        )
        assert await old.result(timeout=WAIT) == 12
        new = await engine.rerun(old.run_id)
        assert new.run_id != old.run_id
        assert await new.result(timeout=WAIT) == 12  # the initial state came along too
        info = await new.info()
        assert info.metadata == {"k": "v"}
        assert (info.forked_from, info.forked_from_step) == (old.run_id, None)
        assert info.resource_id == "u-1"
        assert info.input == {"steps": 2}
        assert info.state == {"count": 12}
        with pytest.raises(RunNotFoundError):
            await engine.rerun("nope")


async def test_state_is_visible_to_clients(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(counter, 3, initial_state={"count": 0})
        assert await run.result(timeout=WAIT) == 3
        assert (await run.info()).state == {"count": 3}
        assert (await types_of(world, run.run_id)).count("state_updated") == 3


async def test_hook_errors(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        with pytest.raises(HookNotFoundError):
            await engine.resume_hook("nobody", 1)
        with pytest.raises(HookNotFoundError):
            await engine.get_hook_by_token("nobody")
        with pytest.raises(HookNotFoundError):
            await engine.resume_webhook("nobody", WebhookRequest())
        run = await engine.start(parked, "t-plain")
        await wait_for_type(run, "hook_created")
        hook = await engine.get_hook_by_token("t-plain")
        assert hook.run_id == run.run_id
        assert not hook.is_webhook
        with pytest.raises(HookNotFoundError, match="not a webhook"):
            await engine.resume_webhook("t-plain", WebhookRequest())
        resumed = await engine.resume_hook("t-plain", {"ok": True})
        assert resumed.received_count == 1
        assert await run.result(timeout=WAIT) == {"ok": True}


async def test_webhooks_answer_with_their_response(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        fixed = await engine.start(hooked_webhook)
        default = await engine.start(plain_webhook)
        await wait_for_type(fixed, "hook_created")
        await wait_for_type(default, "hook_created")
        hooks = {h.run_id: h for h in (await world.list_hooks()).items}
        answer = await engine.resume_webhook(
            hooks[fixed.run_id].token, WebhookRequest(method="POST", body=b"hello")
        )
        assert (answer.status, answer.body) == (200, b"thanks")
        answer = await engine.resume_webhook(hooks[default.run_id].token, WebhookRequest())
        assert (answer.status, answer.body) == (202, b"")
        assert await fixed.result(timeout=WAIT) == "hello"
        assert await default.result(timeout=WAIT) == "POST"


async def test_raise_event_and_resume_step_errors(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        with pytest.raises(RunNotFoundError):
            await engine.raise_event("nope", "go")
        with pytest.raises(ValueError, match="event name"):
            await engine.raise_event("nope", "")
        run = await engine.start(doubler, 4)
        await run.result(timeout=WAIT)
        with pytest.raises(RunTerminalError):
            await engine.raise_event(run.run_id, "late")
        with pytest.raises(EntityConflictError, match="completed, not suspended"):
            await engine.resume_step(run.run_id, double.name, "data")
        with pytest.raises(EntityConflictError, match="not suspended"):
            await engine.resume_step(run.run_id, "double", "data")  # by short name too
        with pytest.raises(StepNotFoundError):
            await engine.resume_step(run.run_id, "no-such-step")


async def test_suspend_and_resume_are_idempotent(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(parked, "t-idem")
        await wait_for_type(run, "hook_created")
        await engine.resume(run.run_id)  # not suspended: a no-op (as in Dapr)
        await run.suspend("maintenance")
        await run.suspend()  # already suspended: a no-op
        assert await run.status() is RunStatus.SUSPENDED
        await run.resume()
        assert await run.status() is RunStatus.RUNNING
        assert (await types_of(world, run.run_id)).count("run_suspended") == 1


async def test_module_level_api_uses_the_default_engine(world: MemoryWorld) -> None:
    with pytest.raises(ConfigurationError, match="no default worldflow engine"):
        api.get_default_engine()
    with pytest.raises(ConfigurationError):
        await api.get_run("x")
    async with running(world, WORKFLOWS) as engine:
        assert api.get_default_engine() is engine
        run = await api.start(parked, "t-api", run_id="via-api")
        await wait_for_type(run, "hook_created")
        assert (await api.get_hook_by_token("t-api")).run_id == "via-api"
        await api.resume_hook("t-api", "payload")
        assert await (await api.get_run("via-api")).result(timeout=WAIT) == "payload"
        assert [w.name for w in await api.list_workflows()] == sorted(w.name for w in WORKFLOWS)
        assert len((await api.list_runs(workflow=parked)).items) == 1
        inner = Engine(world, [doubler], recover=False)
        async with inner:
            assert api.get_default_engine() is inner
        assert api.get_default_engine() is engine  # the outer one is back
    with pytest.raises(ConfigurationError):
        api.get_default_engine()
    previous = api.set_default_engine(engine)
    assert previous is None
    assert api.set_default_engine(None) is engine


async def test_engine_outside_its_context(world: MemoryWorld) -> None:
    engine = Engine(world, WORKFLOWS)
    with pytest.raises(EngineNotRunningError, match=r"was not started.*async with"):
        await engine.start(doubler, 1)
    async with engine:
        pass
    with pytest.raises(EngineNotRunningError, match="has stopped"):
        await engine.start(doubler, 1)
    with pytest.raises(EngineNotRunningError, match="runs once"):
        await engine.__aenter__()
    with pytest.raises(ValueError, match="at least 1"):
        Engine(world, WORKFLOWS, max_cached_runs=0)


async def test_an_engine_refuses_a_read_only_file_world(tmp_path: Path) -> None:
    async with FileWorld(tmp_path / "w") as writer:
        async with FileWorld(tmp_path / "w", read_only=True) as reader:
            with pytest.raises(ConfigurationError, match="read-only"):
                async with Engine(reader, WORKFLOWS):
                    pass
        assert (await writer.list_runs()).items == []


async def test_list_runs_by_time_range(world: MemoryWorld) -> None:
    async with running(world, WORKFLOWS) as engine:
        run = await engine.start(doubler, 1)
        await run.result(timeout=WAIT)
        created = (await run.info()).created_at
        assert len((await engine.list_runs(created_after=created)).items) == 1
        later = created + timedelta(seconds=1)
        assert (await engine.list_runs(created_after=later)).items == []
        assert (await engine.list_runs(created_before=created)).items == []


async def test_without_a_world_the_engine_opens_and_closes_the_default_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLDFLOW_WORLD", "memory://")
    async with Engine(workflows=[doubler]) as engine:
        world = engine.world
        assert isinstance(world, MemoryWorld)
        run = await engine.start(doubler, 2)
        assert await run.result(timeout=WAIT) == {"n": 4}
    with pytest.raises(WorldError, match="closed"):
        await world.get_run(run.run_id)
