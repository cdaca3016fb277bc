"""A child that ended while nobody could tell its parent (the engine died between the
child's end and the parent's ``child_ended``): the engine that recovers the parent tells it,
and the world accepts that report, which it checks against the child's recorded end.

On every kind of world, each time through a *new* world object where the world keeps data
(a restarted process: the file world reopened, a second PostgreSQL world on the schema, a
second ``RemoteWorld`` client), so the check reads the child's end from what is stored, not
from what the first process remembered.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.engine.runtime import WAIT, running, types_of, wait_for_type
from tests.worlds import postgres_db
from tests.worlds.served import served
from worldflow import FatalError, WorkflowFailedError, step, workflow
from worldflow.worlds import ChildEnded, FileWorld, MemoryWorld, RunStatus, World, open_world
from worldflow.worlds._remote import RemoteWorld

pytestmark = pytest.mark.anyio


@step(max_retries=0)
async def judge(x: int) -> int:
    if x < 0:
        raise FatalError(f"no negative numbers: {x}")
    return x * 3


@workflow(name="recovery.kid")
async def kid(x: int) -> int:
    return await judge(x)


@workflow(name="recovery.mom")
async def mom(x: int) -> str:
    try:
        return f"kid said {await kid(x)}"
    except Exception as exc:
        return f"kid failed: {type(exc).__name__}: {exc}"


Opener = Callable[[], Awaitable[World]]


@pytest.fixture(params=["memory", "file", "postgres", "remote"])
async def processes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens the world as a new process sees it (the memory world: the same object)."""
    kind = request.param
    async with AsyncExitStack() as stack:
        if kind == "memory":
            memory = await stack.enter_async_context(MemoryWorld())

            async def same() -> World:
                return memory

            yield same
        elif kind == "file":
            opened: list[FileWorld] = []

            async def reopen() -> World:
                for world in opened:
                    await world.aclose()
                opened.clear()
                world = await FileWorld(tmp_path / "world", fsync=False).open()
                opened.append(world)
                return world

            yield reopen
            for world in opened:
                await world.aclose()
        else:
            if kind == "postgres":
                if postgres_db.SKIP:
                    pytest.skip(postgres_db.SKIP_REASON)
                url = await stack.enter_async_context(postgres_db.fresh_schema())
            else:
                hosted = await stack.enter_async_context(MemoryWorld())
                url = await stack.enter_async_context(served(hosted))

            async def another() -> World:
                world = await (open_world(url) if kind == "postgres" else RemoteWorld.from_url(url))
                stack.push_async_callback(world.aclose)
                return world

            yield another


@pytest.mark.parametrize(
    ("x", "said"), [(2, "kid said 6"), (-1, "kid failed: WorkflowFailedError")]
)
async def test_the_recovering_engine_tells_the_parent_what_the_child_recorded(
    processes: Opener, x: int, said: str
) -> None:
    world = await processes()
    async with running(world, [mom, kid]) as engine:

        async def lost(child: Any) -> bool:  # the crash: the parent is never told
            return False

        engine.driver.endings.notify_parent = lost  # type: ignore[method-assign]
        run = await engine.start(mom, x)
        made = await wait_for_type(run, "step_created")
        await wait_for_type(run, "step_completed")  # the builtin step has created the child
        child_id = f"{run.run_id}-{made.correlation_id}"
        child = await engine.get_run(child_id)
        with contextlib.suppress(WorkflowFailedError):
            await child.result(timeout=WAIT)
    assert (await world.get_run(run.run_id)).status is RunStatus.RUNNING
    assert "child_ended" not in await types_of(world, run.run_id)
    world = await processes()  # a restart
    async with running(world, [mom, kid]) as engine:
        assert (await (await engine.get_run(run.run_id)).result(timeout=WAIT)).startswith(said)
    events = (await world.list_events(run.run_id)).items
    [told] = [e for e in events if isinstance(e, ChildEnded)]
    assert told.child_run_id == child_id
    ended = await world.get_run(child_id)
    assert ended.status is (RunStatus.COMPLETED if x >= 0 else RunStatus.FAILED)
