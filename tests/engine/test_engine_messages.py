"""What users are told: the original error's name, and control verbs refused in their words."""

from __future__ import annotations

import pytest

from tests.engine.both_worlds import Worlds, worlds
from tests.engine.runtime import result_of
from worldflow import (
    Engine,
    RunNotFoundError,
    RunTerminalError,
    WorkflowFailedError,
    step,
    workflow,
)

pytestmark = pytest.mark.anyio
__all__ = ["worlds"]


@step(name="messages.boom", max_retries=0)
async def boom(x: int) -> int:
    raise KeyError(f"no {x}")


@workflow(name="messages.lets_it_through")
async def lets_it_through(x: int) -> int:
    return await boom(x)


@workflow(name="messages.kid")
async def kid(x: int) -> int:
    raise LookupError(f"kid {x}")


@workflow(name="messages.parent")
async def parent(x: int) -> int:
    return await kid(x)


@workflow(name="messages.quick")
async def quick(x: int) -> int:
    return x


async def test_error_name_is_the_original_errors_class(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [lets_it_through, parent, kid]) as engine:
        run = await engine.start(lets_it_through, 1)
        with pytest.raises(WorkflowFailedError) as failed:
            await result_of(run)
        assert failed.value.error_name == "KeyError"
        assert "step 'messages.boom' failed: KeyError" in str(failed.value)
        run = await engine.start(parent, 2)
        with pytest.raises(WorkflowFailedError) as failed:
            await result_of(run)
        assert failed.value.error_name == "LookupError"


async def test_control_verbs_say_what_the_user_did(worlds: Worlds) -> None:
    world = await worlds.open()
    async with Engine(world, [quick]) as engine:
        run = await engine.start(quick, 1)
        await result_of(run)
        with pytest.raises(RunTerminalError, match=r"is completed already: cancel\(\)") as e:
            await run.cancel()
        assert "run_cancelled" not in str(e.value)
        with pytest.raises(RunTerminalError, match=r"suspend\(\) acts on a run that is still"):
            await run.suspend()
        with pytest.raises(RunNotFoundError, match=r"no run 'nope': raise_event\(\)") as gone:
            await engine.raise_event("nope", "go")
        assert "run_created" not in str(gone.value)
