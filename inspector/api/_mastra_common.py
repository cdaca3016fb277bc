"""What the Mastra API's handlers share (:mod:`worldflow.inspector.api.mastra` and
:mod:`worldflow.inspector.api.mastra_streams`): the app keys, Mastra's error shape, the
reservations of ``create-run``, a request's world, catalog and workflow, the run translators
that follow a run's log, the result shapes, and the idempotent start and resume."""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from worldflow.errors import (
    EntityConflictError,
    RunNotFoundError,
)
from worldflow.inspector._body import RequestError, json_body
from worldflow.inspector._keys import CONTROL, principal
from worldflow.inspector._routes import ErrorShape, Problem
from worldflow.inspector.api.mastra_catalog import (
    CatalogEntry,
    InputError,
    MastraCatalog,
    bind_input,
)
from worldflow.inspector.api.mastra_records import RunTranslator
from worldflow.inspector.api.mastra_wire import (
    MastraError,
    MastraIssue,
    ResumeBody,
    StartBody,
)
from worldflow.worlds import WorkflowRun, World

__all__ = [
    "DEFAULT_WAIT",
    "MASTRA_ALIASES",
    "MASTRA_ERRORS",
    "MASTRA_WAIT",
    "MAX_LISTED",
    "NOT_SUSPENDED",
    "PENDING",
    "RECORD_SEPARATOR",
    "RUN_FIELDS",
    "Reservations",
    "Reserved",
    "catalog_of",
    "catch_up",
    "conflict",
    "control_of",
    "existing_run",
    "follow",
    "invalid",
    "is_active",
    "iso",
    "json_response",
    "now_ms",
    "optional_body",
    "resume_run",
    "run_not_found",
    "run_of",
    "run_result",
    "run_state",
    "start_run",
    "translator_of",
    "until_rest",
    "wait_limit",
    "workflow_not_found",
    "workflow_of",
    "world_of",
]

MASTRA_ALIASES: web.AppKey[dict[str, str]] = web.AppKey("worldflow.mastra_aliases", dict)
"""Extra Mastra workflow ids → registered workflow names (set before the app starts)."""

MASTRA_WAIT: web.AppKey[float] = web.AppKey("worldflow.mastra_wait", float)
"""Seconds ``start-async`` / ``resume-async`` and streams wait for a run to come to rest."""

T = TypeVar("T")

PENDING: web.AppKey[Reservations] = web.AppKey("worldflow.mastra_pending")

DEFAULT_WAIT = 60.0
_MAX_RESERVED = 10_000
MAX_LISTED = 10_000
RECORD_SEPARATOR = b"\x1e"
RUN_FIELDS = frozenset(
    {"status", "result", "error", "payload", "steps", "activeStepsPath", "serializedStepGraph"}
)


def _render(problem: Problem) -> MastraError:
    if problem.status == 400 and problem.field:
        where, _, name = problem.field.partition(".")
        title = {"query": "Invalid query parameters", "path": "Invalid path parameters"}.get(
            where, "Invalid request body"
        )
        return MastraError(
            error=title, issues=[MastraIssue(field=name or where, message=problem.message)]
        )
    return MastraError(error=problem.message)


MASTRA_ERRORS = ErrorShape(MastraError, _render)
"""Mastra's error bodies: ``{"error": ...}``, with ``issues`` for validation errors."""


_NOT_FOUND = "Workflow not found"
_RUN_NOT_FOUND = "Workflow run not found"
NOT_SUSPENDED = "This workflow run was not suspended"


def invalid(where: str, message: str) -> RequestError:
    """A 400 naming the field (``query.perPage``, ``body.step``)."""
    return RequestError(400, message, field=where)


def conflict(message: str) -> RequestError:
    return RequestError(409, message, code="entity_conflict")


def workflow_not_found() -> RequestError:
    return RequestError(404, _NOT_FOUND, code="workflow_not_registered")


def run_not_found() -> RequestError:
    return RequestError(404, _RUN_NOT_FOUND, code="run_not_found")


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


# -- reservations of create-run ---------------------------------------------------------------


@dataclass
class Reserved:
    workflow: str
    resource_id: str | None
    created_at: datetime


@dataclass
class Reservations:
    runs: OrderedDict[str, Reserved] = field(default_factory=OrderedDict)

    def add(self, run_id: str, reserved: Reserved) -> None:
        self.runs[run_id] = reserved
        self.runs.move_to_end(run_id)
        while len(self.runs) > _MAX_RESERVED:
            self.runs.popitem(last=False)


# -- shared helpers ---------------------------------------------------------------------------


def control_of(request: web.Request) -> Any:
    return request.app[CONTROL]


def world_of(request: web.Request) -> World:
    world: World = control_of(request).world
    return world


def wait_limit(request: web.Request) -> float:
    return request.app.get(MASTRA_WAIT, DEFAULT_WAIT)


async def catalog_of(request: web.Request) -> MastraCatalog:
    got = control_of(request).list_workflows()
    entries = await got if inspect.isawaitable(got) else got
    return MastraCatalog.build(list(entries), request.app.get(MASTRA_ALIASES))


async def workflow_of(request: web.Request) -> tuple[MastraCatalog, CatalogEntry]:
    catalog = await catalog_of(request)
    entry = catalog.find(request.match_info["workflowId"])
    if entry is None:
        raise workflow_not_found()
    return catalog, entry


async def optional_body(request: web.Request, kind: type[T]) -> T:
    """The JSON body as ``kind``; an empty body is ``kind()`` (the client sends none for
    some calls)."""
    if request.content_length == 0 or not request.can_read_body:
        return kind()
    return await json_body(request, kind)


async def existing_run(world: World, run_id: str) -> WorkflowRun | None:
    try:
        return await world.get_run(run_id)
    except RunNotFoundError:
        return None


async def run_of(world: World, entry: CatalogEntry, run_id: str) -> WorkflowRun:
    """The run, if it is one of ``entry``'s: a Mastra workflow sees only its own runs, so
    another workflow's run is as unknown as a missing one (404)."""
    run = await world.get_run(run_id)
    if run.workflow_name != entry.name:
        raise run_not_found()
    return run


async def translator_of(world: World, run: WorkflowRun, key: str) -> RunTranslator:
    translator = RunTranslator(run_id=run.run_id, workflow_id=key)
    await catch_up(world, translator)
    return translator


async def catch_up(world: World, translator: RunTranslator) -> None:
    while True:
        page = await world.list_events(translator.run_id, after_seq=translator.last_seq)
        translator.feed(list(page.items))
        if not page.has_more:
            return


async def follow(world: World, translator: RunTranslator, *, until: float) -> bool:
    """Wait for the next events of the run (until the loop time ``until``); False: timed out."""
    loop = asyncio.get_running_loop()
    remaining = until - loop.time()
    if remaining <= 0:
        return False
    before = translator.last_seq
    await world.wait_for_run(translator.run_id, after_seq=before, timeout=remaining)
    await catch_up(world, translator)
    return translator.last_seq > before


async def until_rest(request: web.Request, translator: RunTranslator) -> None:
    """Follow the run until it ends or rests on something outside it, or the wait runs out."""
    world = world_of(request)
    until = asyncio.get_running_loop().time() + wait_limit(request)
    while not translator.at_rest:
        if not await follow(world, translator, until=until) and (
            asyncio.get_running_loop().time() >= until
        ):
            return


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


# -- result shapes ----------------------------------------------------------------------------


def run_result(translator: RunTranslator) -> dict[str, Any]:
    """A ``start-async`` / ``resume-async`` body: Mastra 1.x's result, plus the 0.x keys."""
    status = translator.mastra_status()
    steps = translator.steps_json(with_input=True)
    out: dict[str, Any] = {
        "status": status,
        "steps": steps,
        "input": translator.input,
        "stepExecutionPath": translator.execution_path(),
    }
    if status == "success":
        out["result"] = translator.result
    elif status == "failed":
        out["error"] = translator.error
    elif status == "suspended":
        out["suspended"], out["suspendPayload"] = translator.suspended_json()
    out["runId"] = translator.run_id
    current: dict[str, Any] = {}
    if translator.order:
        name = translator.order[-1]
        step = translator.steps[name]
        current = {"id": name, "status": step.status, "output": step.output}
        current["payload"] = step.payload
    out["eventTimestamp"] = now_ms()
    out["payload"] = {
        "currentStep": current,
        "workflowState": {"status": status, "steps": translator.steps_json(with_input=False)},
    }
    return out


def run_state(
    translator: RunTranslator,
    *,
    key: str,
    run: WorkflowRun | None,
    reserved: Reserved | None = None,
    fields: frozenset[str] | None = None,
) -> dict[str, Any]:
    """A run's ``WorkflowState`` (``runById``), limited to ``fields`` when given."""
    status = translator.mastra_status()
    out: dict[str, Any] = {"runId": translator.run_id, "workflowName": key}
    resource_id = run.resource_id if run else reserved.resource_id if reserved else None
    if resource_id is not None:
        out["resourceId"] = resource_id
    created = run.created_at if run else reserved.created_at if reserved else datetime.now(UTC)
    updated = run.updated_at if run else created
    out.update(createdAt=iso(created), updatedAt=iso(updated), status=status)
    full: dict[str, Any] = {}
    if status == "success":
        full["result"] = translator.result
    if status == "failed":
        full["error"] = translator.error
    full["payload"] = translator.input
    full["steps"] = translator.steps_json(with_input=False)
    full["activeStepsPath"] = {
        name: [i] for i, name in enumerate(translator.order) if is_active(translator, name)
    }
    full["serializedStepGraph"] = [
        {"type": "step", "step": {"id": name, "canSuspend": True}} for name in translator.order
    ]
    if fields is not None:
        return {**out, **{k: v for k, v in full.items() if k in fields}}
    full["suspendedPaths"] = {
        name: [i]
        for i, name in enumerate(translator.order)
        if translator.steps[name].status == "suspended"
    }
    full["resumeLabels"] = {}
    full["waitingPaths"] = {}
    if translator.initial_state is not None:
        full["initialState"] = translator.initial_state
    return {**out, **full}


def is_active(translator: RunTranslator, name: str) -> bool:
    return translator.steps[name].status in ("running", "pending")


async def start_run(
    request: web.Request, entry: CatalogEntry, run_id: str, body: StartBody, *, reserved: bool
) -> WorkflowRun | None:
    """Start ``run_id`` unless it exists (idempotent); the existing run, or None if new."""
    world = world_of(request)
    existing = await existing_run(world, run_id)
    pending = request.app[PENDING]
    if existing is not None:
        if existing.workflow_name != entry.name:
            raise conflict(f"run {run_id!r} belongs to workflow {existing.workflow_name!r}")
        return existing
    held = pending.runs.get(run_id)
    if reserved and held is None:
        raise run_not_found()
    if held is not None and held.workflow != entry.name:
        raise conflict(f"run {run_id!r} was created for workflow {held.workflow!r}")
    try:
        kwargs = bind_input(entry, body.inputData)
    except InputError as error:
        raise RequestError(400, str(error), code="invalid_input_data") from None
    resource_id = body.resourceId if body.resourceId is not None else (held and held.resource_id)
    try:
        await control_of(request).start(
            entry.name,
            run_id=run_id,
            resource_id=resource_id or None,
            initial_state=body.initialState,
            **kwargs,
        )
    except EntityConflictError:  # started meanwhile by a retry of this same request
        again = await existing_run(world, run_id)
        if again is None or again.workflow_name != entry.name:
            raise
        return again
    finally:
        pending.runs.pop(run_id, None)
    return None


async def resume_run(
    request: web.Request, entry: CatalogEntry, run_id: str, body: ResumeBody, key: str
) -> tuple[RunTranslator, int]:
    """Resume the step (idempotent per data); the run's translator and where its new
    segment's records begin."""
    world = world_of(request)
    run = await run_of(world, entry, run_id)
    translator = await translator_of(world, run, key)
    step = body.step[-1] if isinstance(body.step, list) and body.step else body.step
    if not isinstance(step, str) or not step:
        suspended = translator.suspended_steps
        if not suspended:
            raise conflict(NOT_SUSPENDED)
        call = suspended[0]
    else:
        found = translator.steps.get(step)
        if found is None:
            raise invalid("body.step", f"this run has no step {step!r}")
        call = found
    start_at = len(translator.records)
    if call.status != "suspended":
        if call.has_resume and call.resume_payload == body.resumeData:
            return translator, start_at  # a retry of the resume that already went through
        raise conflict(NOT_SUSPENDED)
    try:
        await control_of(request).resume_step(
            run_id, call.step_call_id, body.resumeData, actor=principal(request)
        )
    except EntityConflictError:
        await catch_up(world, translator)
        if not (call.has_resume and call.resume_payload == body.resumeData):
            raise conflict(NOT_SUSPENDED) from None
    return translator, start_at
