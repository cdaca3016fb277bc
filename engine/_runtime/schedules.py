"""Cron schedules, kept in the world as durable runs of a builtin workflow.

A schedule is a run of :data:`SCHEDULER` (run id ``schedule:<name>:<generation>``, metadata
``worldflow.schedule = <name>``) whose body sleeps until the next tick and then starts the
scheduled workflow through a step. Everything a schedule is lives in its log, so it holds
across processes and on every world, and the engine's own rules give the guarantees:

* exactly one run per tick, even with several engines: a tick's run id is derived from the
  schedule and the tick (``<name>@<tick ISO>``), so a second start is a conflict, and the
  scheduler run itself has one owner at a time;
* missed ticks (no engine was up, or the schedule was paused) are handled by the schedule's
  catch-up policy when its timer fires late (:data:`~worldflow._cron.CatchUp`); an overlapping
  tick by its overlap policy (:data:`~worldflow._cron.Overlap`);
* pause / resume are the run's own suspend / resume; trigger and update are named events the
  body waits for beside its timer; delete cancels and purges the run.

A scheduler run hands over to a fresh generation after ``ticks_per_run`` ticks, so its log stays
short however long the schedule lives.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from worldflow._cron import CronSchedule, due_ticks, next_tick, pick_ticks
from worldflow._primitives import get_state, now, set_state, uuid4, wait_for_event
from worldflow._registry import _ALL_WORKFLOWS as _KNOWN_WORKFLOWS
from worldflow._registry import (
    Backoff,
    StepFunction,
    StepOptions,
    WorkflowDefinition,
    make_step,
)
from worldflow._runtime.step_info import current_step
from worldflow.errors import (
    EntityConflictError,
    FatalError,
    RunNotFoundError,
    RunTerminalError,
    ScheduleNotFoundError,
)
from worldflow.worlds import RunStatus, World

__all__ = ["SCHEDULER", "ScheduleInfo", "Schedules", "declared", "scheduler_definition"]

SCHEDULER = "worldflow.schedule"
"""The builtin workflow whose runs are schedules."""

CONTROL_EVENT = "worldflow.schedule.control"
"""The named event that carries ``trigger`` / ``update`` / ``stop`` to a schedule's run."""

SCHEDULE_KEY = "worldflow.schedule"
"""The metadata key naming the schedule, on the scheduler's runs and on the runs it starts."""

TICK_KEY = "worldflow.tick"
"""The metadata key holding the tick (ISO time, UTC) a scheduled run was started for."""

_LIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED)


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a schedule starts and when (the scheduler run's input and state)."""

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    catch_up: str = "once"
    overlap: str = "skip"
    grace: float = 60.0
    max_backfill: int = 100
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    ticks_per_run: int = 500

    def timing(self) -> CronSchedule:
        """The cron part, checked."""
        return CronSchedule(
            cron=self.cron,
            timezone=self.timezone,
            catch_up=self.catch_up,  # type: ignore[arg-type]  # checked by CronSchedule
            overlap=self.overlap,  # type: ignore[arg-type]
            grace=self.grace,
            max_backfill=self.max_backfill,
        )


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as it stands.

    Attributes:
        name: The schedule's name.
        workflow: The workflow it starts.
        cron: Its cron expression; ``timezone`` the zone it is read in.
        paused: Whether it is paused (no runs start until resumed).
        next_tick: When it starts a run next (UTC), if known.
        last_tick: The last tick it handled (UTC), if any.
        last_run_id: The last run it started, if any.
        started: How many runs it has started; ``skipped``: ticks it skipped.
        catch_up: The missed-ticks policy; ``overlap`` the overlap policy.
        run_id: The scheduler run that holds it (one per generation).
    """

    name: str
    workflow: str
    cron: str
    timezone: str
    paused: bool
    next_tick: datetime | None
    last_tick: datetime | None
    last_run_id: str | None
    started: int
    skipped: int
    catch_up: str
    overlap: str
    run_id: str


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- inside the scheduler run ---------------------------------------------------------------


class _Starter(Protocol):
    """What the start step needs: a control plane that can start runs by name."""

    @property
    def world(self) -> World: ...

    async def start(self, workflow: str, /, *args: Any, **kwargs: Any) -> Any: ...


def _engine() -> _Starter:
    ctx = current_step()
    engine = getattr(getattr(ctx, "services", None), "engine", None)
    if engine is None:
        raise FatalError(f"{SCHEDULER} runs only inside a worldflow Engine")
    return engine  # type: ignore[no-any-return]


async def _start_scheduled(
    spec: dict[str, Any], run_id: str, tick: str, last_run: str | None
) -> dict[str, Any]:
    """Start the scheduled run ``run_id`` for ``tick`` (once), unless the overlap policy
    skips it; what happened, for the schedule's state."""
    engine = _engine()
    world = engine.world
    try:
        await world.get_run(run_id)
        return {"run_id": run_id, "skipped": None}  # started by an earlier attempt
    except RunNotFoundError:
        pass
    if spec.get("overlap") == "skip" and last_run:
        try:
            previous = await world.get_run(last_run)
        except RunNotFoundError:
            previous = None
        if previous is not None and not previous.status.is_terminal:
            return {"run_id": None, "skipped": f"{last_run} is still {previous.status}"}
    metadata = {SCHEDULE_KEY: spec["name"], TICK_KEY: tick}
    try:
        await engine.start(
            spec["workflow"], *spec["args"], run_id=run_id, metadata=metadata, **spec["kwargs"]
        )
    except EntityConflictError:
        pass  # another engine (or a lost answer) started it: one run per tick
    return {"run_id": run_id, "skipped": None}


_START: StepFunction[Any, dict[str, Any]] = StepFunction(
    make_step(
        _start_scheduled,
        name="worldflow.schedule.start",
        options=StepOptions(max_retries=10, backoff=Backoff.of(1.0)),
        builtin=True,
    )
)


async def _hand_over(spec: dict[str, Any], generation: int, state: dict[str, Any]) -> str:
    """Start the schedule's next generation (once); its run id."""
    engine = _engine()
    run_id = f"schedule:{spec['name']}:{generation}"
    try:
        await engine.start(
            SCHEDULER,
            spec,
            generation=generation,
            carried=state,
            run_id=run_id,
            metadata={SCHEDULE_KEY: spec["name"]},
        )
    except EntityConflictError:
        pass
    return run_id


_HAND_OVER: StepFunction[Any, str] = StepFunction(
    make_step(
        _hand_over,
        name="worldflow.schedule.hand_over",
        options=StepOptions(max_retries=10, backoff=Backoff.of(1.0)),
        builtin=True,
    )
)


async def _scheduler(
    spec: dict[str, Any], generation: int = 0, carried: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The body of a schedule: sleep to the next tick, start the run, repeat."""
    state: dict[str, Any] = {
        "spec": spec,
        "last_tick": None,
        "next_tick": None,
        "last_run_id": None,
        "started": 0,
        "skipped": 0,
        **(carried or {}),
    }
    state["spec"] = spec
    ticks = 0
    while True:
        timing = ScheduleSpec(**spec).timing()
        anchor = _parse(state["last_tick"]) or now()
        upcoming = next_tick(timing, anchor)
        state["next_tick"] = _iso(upcoming)
        set_state(state)
        delay = max((upcoming - now()).total_seconds(), 0.0)
        try:
            control = await wait_for_event(CONTROL_EVENT, timeout=delay)
        except TimeoutError:
            control = None
        if control is not None:
            op = control.get("op") if isinstance(control, dict) else None
            if op == "stop":
                return {"stopped": True, **get_state()}
            if op == "update":
                spec = {**spec, **control.get("changes", {})}
                state["spec"] = spec
            if op == "trigger":
                run_id = f"{spec['name']}@manual-{uuid4()}"
                await _fire(state, spec, run_id, _iso(now()), state["last_run_id"])
            continue
        due = due_ticks(timing, anchor, now(), timing.max_backfill + 1)
        chosen = pick_ticks(timing, due, now())
        before = state["last_run_id"]  # a backfill's runs do not overlap one another
        for tick in chosen:
            await _fire(state, spec, f"{spec['name']}@{_iso(tick)}", _iso(tick), before)
        if due:
            state["skipped"] += len(due) - len(chosen)
            state["last_tick"] = _iso(due[-1])
        else:
            state["last_tick"] = _iso(upcoming)
        set_state(state)
        ticks += 1
        if ticks >= int(spec.get("ticks_per_run", 500)):
            successor = await _HAND_OVER(spec, generation + 1, state)
            return {"continued_as": successor, **state}


async def _fire(
    state: dict[str, Any], spec: dict[str, Any], run_id: str, tick: str, previous: str | None
) -> None:
    result = await _START(spec, run_id, tick, previous)
    if result["run_id"] is None:
        state["skipped"] += 1
    else:
        state["started"] += 1
        state["last_run_id"] = result["run_id"]


_DEFINITION = WorkflowDefinition(
    name=SCHEDULER, fn=_scheduler, signature=inspect.signature(_scheduler)
)
_KNOWN_WORKFLOWS[SCHEDULER] = _DEFINITION


def scheduler_definition() -> WorkflowDefinition:
    """The builtin scheduler workflow (every engine serves it)."""
    return _DEFINITION


# -- the control plane side -----------------------------------------------------------------


class _Control(Protocol):
    """The verbs :class:`Schedules` uses (an Engine or a Client)."""

    @property
    def world(self) -> World: ...

    async def start(self, workflow: str, /, *args: Any, **kwargs: Any) -> Any: ...

    async def raise_event(self, run_id: str, name: str, payload: Any = None) -> None: ...

    async def suspend(self, run_id: str, reason: str | None = None) -> None: ...

    async def resume(self, run_id: str) -> None: ...

    async def cancel(self, run_id: str, reason: str | None = None) -> None: ...

    async def purge(self, run_id: str) -> None: ...


class Schedules:
    """Add, pause, resume, trigger, update, delete and list cron schedules.

    ``engine.schedules`` (or ``Schedules(client)``). Every operation is a write to the world,
    so it holds for every engine on it; the schedule's runs are driven by whichever engine
    owns its scheduler run (every engine serves the scheduler).
    """

    def __init__(self, control: _Control) -> None:
        self._control = control

    async def _live_run(self, name: str) -> str:
        page = await self._control.world.list_runs(
            workflow_name=SCHEDULER, metadata={SCHEDULE_KEY: name}, status=_LIVE, limit=5
        )
        if not page.items:
            raise ScheduleNotFoundError(
                f"there is no schedule named {name!r}; add it with schedules.add()"
            )
        return page.items[0].run_id

    async def add(
        self,
        name: str,
        workflow: Any,
        cron: str,
        *args: Any,
        timezone: str = "UTC",
        catch_up: str = "once",
        overlap: str = "skip",
        grace: float = 60.0,
        max_backfill: int = 100,
        ticks_per_run: int = 500,
        **kwargs: Any,
    ) -> ScheduleInfo:
        """Start running ``workflow(*args, **kwargs)`` at every tick of ``cron``.

        Args:
            name: The schedule's unique name (part of every run id it makes).
            workflow: The ``@workflow`` function or its registered name.
            cron: A cron expression (see :class:`~worldflow.CronSchedule`).
            timezone: The IANA zone ``cron`` is read in.
            catch_up: Missed ticks: ``"skip"``, ``"once"`` (default) or ``"backfill"``.
            overlap: While the last run still goes: ``"skip"`` (default) or ``"allow"``.

        Raises:
            EntityConflictError: a schedule with this name exists.
            ValueError: a bad cron expression, zone or policy.
        """
        if not isinstance(name, str) or not name or "@" in name:
            raise ValueError(f"a schedule name is a non-empty str without '@', not {name!r}")
        workflow_name = workflow if isinstance(workflow, str) else workflow.definition.name
        spec = ScheduleSpec(
            name=name,
            workflow=workflow_name,
            cron=cron,
            timezone=timezone,
            catch_up=catch_up,
            overlap=overlap,
            grace=grace,
            max_backfill=max_backfill,
            args=list(args),
            kwargs=kwargs,
            ticks_per_run=ticks_per_run,
        )
        spec.timing()  # refuse a bad expression, zone or policy before anything is stored
        try:
            await self._live_run(name)
        except ScheduleNotFoundError:
            pass
        else:
            raise EntityConflictError(
                f"a schedule named {name!r} exists; update() it, or delete() it first"
            )
        generation = 0
        while True:
            run_id = f"schedule:{name}:{generation}"
            try:
                await self._control.start(
                    SCHEDULER,
                    msgspec.to_builtins(spec),
                    generation=generation,
                    run_id=run_id,
                    metadata={SCHEDULE_KEY: name},
                )
                break
            except EntityConflictError:
                generation += 1  # an earlier schedule of this name, deleted: a new generation
        return await self.get(name)

    async def ensure(self, workflow: Any, timing: CronSchedule) -> None:
        """Make the schedule a ``@workflow(schedule=...)`` declares exist and match it."""
        name = workflow.name if isinstance(workflow, WorkflowDefinition) else str(workflow)
        changes = {
            "cron": timing.cron,
            "timezone": timing.timezone,
            "catch_up": timing.catch_up,
            "overlap": timing.overlap,
            "grace": timing.grace,
            "max_backfill": timing.max_backfill,
        }
        try:
            info = await self.get(name)
        except ScheduleNotFoundError:
            try:
                await self.add(name, name, **changes)  # type: ignore[arg-type]
            except EntityConflictError:
                pass  # another engine added it at the same moment
            return
        if (info.cron, info.timezone, info.catch_up, info.overlap) != (
            timing.cron,
            timing.timezone,
            timing.catch_up,
            timing.overlap,
        ):
            await self.update(name, **changes)

    async def get(self, name: str) -> ScheduleInfo:
        """The schedule named ``name``; unknown → :class:`~worldflow.ScheduleNotFoundError`."""
        run = await self._control.world.get_run(await self._live_run(name))
        return _info(run)

    async def list(self) -> list[ScheduleInfo]:
        """Every live schedule, by name."""
        out: dict[str, ScheduleInfo] = {}
        cursor: str | None = None
        while True:
            page = await self._control.world.list_runs(
                workflow_name=SCHEDULER, status=_LIVE, limit=500, cursor=cursor
            )
            for run in page.items:
                info = _info(run)
                out.setdefault(info.name, info)
            if not page.has_more:
                return [out[k] for k in sorted(out)]
            cursor = page.cursor

    async def pause(self, name: str) -> None:
        """Start no runs until :meth:`resume` (ticks missed meanwhile follow the catch-up
        policy; ``skip`` drops them)."""
        await self._control.suspend(await self._live_run(name), f"schedule {name} paused")

    async def resume(self, name: str) -> None:
        """Go on after :meth:`pause`."""
        await self._control.resume(await self._live_run(name))

    async def trigger(self, name: str) -> None:
        """Start one run now, besides the ticks."""
        await self._send(name, {"op": "trigger"})

    async def update(self, name: str, **changes: Any) -> None:
        """Change the schedule (``cron``, ``timezone``, ``catch_up``, ``overlap``, ``args``,
        ``kwargs``, ...); it takes effect from the next tick."""
        current = await self.get(name)
        allowed = set(ScheduleSpec.__struct_fields__) - {"name", "workflow"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ValueError(f"cannot change {', '.join(unknown)} of a schedule")
        merged = {
            "name": name,
            "workflow": current.workflow,
            "cron": current.cron,
            "timezone": current.timezone,
            **changes,
        }
        ScheduleSpec(**merged).timing()  # refuse a bad change before sending it
        await self._send(name, {"op": "update", "changes": changes})

    async def delete(self, name: str) -> None:
        """Stop the schedule for good (runs it started go on)."""
        run_id = await self._live_run(name)
        try:
            await self._control.cancel(run_id, f"schedule {name} deleted")
        except RunTerminalError:
            pass
        await self._control.purge(run_id)

    async def _send(self, name: str, control: dict[str, Any]) -> None:
        await self._control.raise_event(await self._live_run(name), CONTROL_EVENT, control)


def _info(run: Any) -> ScheduleInfo:
    from worldflow import _serde

    state = _serde.decode(run.state) or {}
    spec = state.get("spec") or _serde.decode(run.input).get("spec") or {}
    return ScheduleInfo(
        name=spec.get("name", run.metadata.get(SCHEDULE_KEY, "")),
        workflow=spec.get("workflow", ""),
        cron=spec.get("cron", ""),
        timezone=spec.get("timezone", "UTC"),
        paused=run.status is RunStatus.SUSPENDED,
        next_tick=_parse(state.get("next_tick")) or _first_tick(spec, run.created_at),
        last_tick=_parse(state.get("last_tick")),
        last_run_id=state.get("last_run_id"),
        started=int(state.get("started", 0)),
        skipped=int(state.get("skipped", 0)),
        catch_up=spec.get("catch_up", "once"),
        overlap=spec.get("overlap", "skip"),
        run_id=run.run_id,
    )


def _first_tick(spec: dict[str, Any], created_at: datetime) -> datetime | None:
    """Before the scheduler run has been driven: the first tick after its creation."""
    try:
        return next_tick(ScheduleSpec(**spec).timing(), created_at)
    except (TypeError, ValueError):
        return None


def declared(
    workflows: Iterable[WorkflowDefinition],
) -> list[tuple[WorkflowDefinition, CronSchedule]]:
    """The workflows among ``workflows`` that declare ``@workflow(schedule=...)``."""
    return [(d, timing) for d in workflows if (timing := d.schedule) is not None]
