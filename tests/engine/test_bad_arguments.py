"""Bad values given to the control verbs are refused at the call, naming the argument, and
nothing is written: a file world reopens afterwards with every run as it was (issue #10,
"Bad values are stored, then make logs unreadable" and "Payloads and ids that break the
engine")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.runtime import WAIT, running, wait_for_type
from worldflow import SerializationError, create_hook, workflow
from worldflow.worlds import FileWorld, RunStatus, World
from worldflow.worlds._ids import MAX_ID_LENGTH

pytestmark = pytest.mark.anyio


@workflow
async def echo(value: object = None) -> object:
    """Return ``value``."""
    return value


@workflow
async def waits_on_hook(token: str) -> object:
    """Wait on the hook ``token``; return its payload."""
    return await create_hook(token=token)


async def _reopened(world: World) -> World | None:
    """For a file world: a fresh open of its directory (the caller closes it)."""
    if isinstance(world, FileWorld):
        await world.aclose()
        return await FileWorld(world.path).open()
    return None


def _cyclic_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = {"again": value}
    return value


_BAD_STARTS: list[tuple[str, type[Exception], str, dict[str, Any]]] = [
    ("resource_id-int", TypeError, "resource_id", {"resource_id": 5}),
    ("resource_id-surrogate", ValueError, "resource_id", {"resource_id": "t\ud800"}),
    ("resource_id-newline", ValueError, "resource_id", {"resource_id": "a\nb"}),
    ("run_id-int", TypeError, "run_id", {"run_id": 7}),
    ("run_id-empty", ValueError, "run_id", {"run_id": ""}),
    ("run_id-surrogate", ValueError, "run_id", {"run_id": "r\udcff"}),
    ("run_id-too-long", ValueError, "run_id", {"run_id": "r" * (MAX_ID_LENGTH + 1)}),
    ("metadata-int-value", TypeError, "metadata", {"metadata": {"k": 1}}),
    ("metadata-list", TypeError, "metadata", {"metadata": ["k"]}),
    ("metadata-surrogate", ValueError, "metadata", {"metadata": {"k": "v\ud800"}}),
    ("metadata-empty-key", ValueError, "metadata", {"metadata": {"": "v"}}),
    ("input-cycle-list", SerializationError, r"\$", {"value": _cyclic_list()}),
    ("input-cycle-dict", SerializationError, r"\$", {"value": _cyclic_dict()}),
    ("input-surrogate", SerializationError, r"\$", {"value": {"name": "x\ud800"}}),
    ("state-cycle", SerializationError, "contains itself", {"initial_state": _cyclic_list()}),
]


@pytest.mark.parametrize(
    ("error", "match", "arguments"),
    [pytest.param(e, m, a, id=i) for i, e, m, a in _BAD_STARTS],
)
async def test_a_bad_start_argument_is_refused_and_nothing_is_written(
    world: World, error: type[Exception], match: str, arguments: dict[str, Any]
) -> None:
    async with running(world, [echo]) as engine:
        good = await engine.start(echo, "fine", run_id="good-run")
        assert await good.result(timeout=WAIT) == "fine"
        with pytest.raises(error, match=match):
            await engine.start(echo, **arguments)
        assert [r.run_id for r in (await engine.list_runs()).items] == ["good-run"]
    reopened = await _reopened(world)
    if reopened is not None:
        try:
            runs = (await reopened.list_runs()).items
            assert [(r.run_id, r.status) for r in runs] == [("good-run", RunStatus.COMPLETED)]
        finally:
            await reopened.aclose()


_Verb = Callable[[Any, str], Any]  # Any: these calls break the static types on purpose
_BAD_VERBS: list[tuple[str, type[Exception], str, _Verb]] = [
    ("cancel-reason-int", TypeError, "reason", lambda e, r: e.cancel(r, reason=5)),
    ("cancel-reason-surrogate", ValueError, "reason", lambda e, r: e.cancel(r, "\ud800")),
    (
        "cancel-output-cycle",
        SerializationError,
        "itself",
        lambda e, r: e.cancel(r, output=_cyclic_list()),
    ),
    ("suspend-reason-list", TypeError, "reason", lambda e, r: e.suspend(r, reason=["x"])),
    ("raise_event-name-int", TypeError, "event name", lambda e, r: e.raise_event(r, 5)),
    ("raise_event-name-empty", ValueError, "event name", lambda e, r: e.raise_event(r, "")),
    (
        "raise_event-payload-cycle",
        SerializationError,
        "itself",
        lambda e, r: e.raise_event(r, "go", _cyclic_dict()),
    ),
    ("raise_event-run_id-int", TypeError, "run_id", lambda e, r: e.raise_event(5, "go")),
    ("resume_hook-token-int", TypeError, "token", lambda e, r: e.resume_hook(5, "x")),
    ("resume_hook-token-surrogate", ValueError, "token", lambda e, r: e.resume_hook("t\ud800")),
    (
        "resume_hook-payload-surrogate",
        SerializationError,
        "surrogate",
        lambda e, r: e.resume_hook(f"tok-{r}", "a\udc80"),
    ),
    ("resume_step-step-int", TypeError, "step", lambda e, r: e.resume_step(r, 3)),
    ("get_run-int", TypeError, "run_id", lambda e, r: e.get_run(5)),
    ("purge-none", TypeError, "run_id", lambda e, r: e.purge(None)),
]


@pytest.mark.parametrize(
    ("error", "match", "verb"), [pytest.param(e, m, v, id=i) for i, e, m, v in _BAD_VERBS]
)
async def test_a_bad_verb_argument_is_refused_and_the_run_goes_on(
    world: World, error: type[Exception], match: str, verb: _Verb
) -> None:
    run_id = "parked-run"
    async with running(world, [waits_on_hook]) as engine:
        run = await engine.start(waits_on_hook, f"tok-{run_id}", run_id=run_id)
        await wait_for_type(run, "hook_created")
        before = (await world.list_events(run_id)).items
        with pytest.raises(error, match=match):
            await verb(engine, run_id)
        assert (await world.list_events(run_id)).items == before
        await engine.resume_hook(f"tok-{run_id}", "done")
        assert await run.result(timeout=WAIT) == "done"


async def test_a_cancel_with_a_bad_reason_does_not_come_back_after_reopen(
    tmp_path: Path,
) -> None:
    """The example of the issue: ``cancel(reason=5)`` was acknowledged, then dropped at
    reopen as a torn tail, so the run came back to life."""
    async with FileWorld(tmp_path / "w") as world, running(world, [waits_on_hook]) as engine:
        run = await engine.start(waits_on_hook, "tok", run_id="r")
        with pytest.raises(TypeError, match="reason"):
            await engine.cancel(run.run_id, reason=5)  # type: ignore[arg-type]
        await engine.cancel(run.run_id, reason="for real")
    async with FileWorld(tmp_path / "w") as world:
        view = await world.get_run("r")
        assert (view.status, view.cancel_reason) == (RunStatus.CANCELLED, "for real")
