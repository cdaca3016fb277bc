"""The Mastra workflows API (``/api/workflows/...``), as ``@mastra/client-js`` 1.47 calls it.

A TypeScript service using the real client runs worldflow workflows unchanged:

* a Mastra workflow id is a registered workflow name, its short name, or an alias
  (:data:`MASTRA_ALIASES`); ``details`` and ``listWorkflows`` come from the catalog;
* ``inputData`` binds to the parameters by name, ``initialState`` is the initial state; bad
  input is a 400 in Mastra's ``Invalid input data`` form naming the fields;
* Mastra's step suspension is :func:`worldflow.suspend` in a step and ``resume_step``;
* ``start-async`` / ``resume-async`` answer when the run ends or rests on something outside
  it (a suspended step, a hook, a named event), waiting out sleeps and running steps for at
  most :data:`MASTRA_WAIT` seconds; starts and resumes are idempotent per run id (the client
  retries every 5xx, so a retried request returns the same outcome and never acts twice);
* ``stream``, ``resume-stream`` and ``observe`` send Mastra's chunk records (JSON separated by
  ``\\x1e``), made from the run's log (:mod:`.mastra_records`), so ``observe`` works for any
  run, also after a restart.

A run made with ``create-run`` and not yet started has no log yet: the app holds it (its id,
workflow and resource id) until ``start``, in memory, so such a reservation does not survive
a restart of the server (a started run does).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import uuid4

import msgspec
from aiohttp import web

from worldflow.errors import (
    EntityConflictError,
    RunNotFoundError,
    RunNotTerminalError,
    RunTerminalError,
)
from worldflow.inspector._body import RequestError, json_body, query_params
from worldflow.inspector._keys import CONTROL, principal
from worldflow.inspector._routes import ErrorShape, Problem, route
from worldflow.inspector.api.mastra_catalog import (
    CatalogEntry,
    InputError,
    MastraCatalog,
    bind_input,
    describe,
)
from worldflow.inspector.api.mastra_records import RunTranslator
from worldflow.inspector.api.mastra_wire import (
    CreateRunBody,
    CreateRunQuery,
    MastraError,
    MastraIssue,
    Message,
    ObserveQuery,
    ResumeBody,
    RunByIdQuery,
    RunIdQuery,
    RunIdResponse,
    RunsList,
    RunsQuery,
    StartBody,
)
from worldflow.worlds import RunStatus, WorkflowRun, World

__all__ = ["MASTRA_ALIASES", "MASTRA_ERRORS", "MASTRA_WAIT", "add_routes"]

MASTRA_ALIASES: web.AppKey[dict[str, str]] = web.AppKey("worldflow.mastra_aliases", dict)
"""Extra Mastra workflow ids → registered workflow names (set before the app starts)."""

MASTRA_WAIT: web.AppKey[float] = web.AppKey("worldflow.mastra_wait", float)
"""Seconds ``start-async`` / ``resume-async`` and streams wait for a run to come to rest."""

T = TypeVar("T")

_PENDING: web.AppKey[_Reservations] = web.AppKey("worldflow.mastra_pending")

DEFAULT_WAIT = 60.0
_MAX_RESERVED = 10_000
_MAX_LISTED = 10_000
_RS = b"\x1e"
_RUN_FIELDS = frozenset(
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
_NOT_SUSPENDED = "This workflow run was not suspended"


def _invalid(where: str, message: str) -> RequestError:
    """A 400 naming the field (``query.perPage``, ``body.step``)."""
    return RequestError(400, message, field=where)


def _conflict(message: str) -> RequestError:
    return RequestError(409, message, code="entity_conflict")


def _workflow_not_found() -> RequestError:
    return RequestError(404, _NOT_FOUND, code="workflow_not_registered")


def _run_not_found() -> RequestError:
    return RequestError(404, _RUN_NOT_FOUND, code="run_not_found")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


# -- reservations of create-run ---------------------------------------------------------------


@dataclass
class _Reserved:
    workflow: str
    resource_id: str | None
    created_at: datetime


@dataclass
class _Reservations:
    runs: OrderedDict[str, _Reserved] = field(default_factory=OrderedDict)

    def add(self, run_id: str, reserved: _Reserved) -> None:
        self.runs[run_id] = reserved
        self.runs.move_to_end(run_id)
        while len(self.runs) > _MAX_RESERVED:
            self.runs.popitem(last=False)


# -- shared helpers ---------------------------------------------------------------------------


def _control(request: web.Request) -> Any:
    return request.app[CONTROL]


def _world(request: web.Request) -> World:
    world: World = _control(request).world
    return world


def _wait_limit(request: web.Request) -> float:
    return request.app.get(MASTRA_WAIT, DEFAULT_WAIT)


async def _catalog(request: web.Request) -> MastraCatalog:
    got = _control(request).list_workflows()
    entries = await got if inspect.isawaitable(got) else got
    return MastraCatalog.build(list(entries), request.app.get(MASTRA_ALIASES))


async def _workflow(request: web.Request) -> tuple[MastraCatalog, CatalogEntry]:
    catalog = await _catalog(request)
    entry = catalog.find(request.match_info["workflowId"])
    if entry is None:
        raise _workflow_not_found()
    return catalog, entry


async def _optional_body(request: web.Request, kind: type[T]) -> T:
    """The JSON body as ``kind``; an empty body is ``kind()`` (the client sends none for
    some calls)."""
    if request.content_length == 0 or not request.can_read_body:
        return kind()
    return await json_body(request, kind)


async def _existing(world: World, run_id: str) -> WorkflowRun | None:
    try:
        return await world.get_run(run_id)
    except RunNotFoundError:
        return None


async def _translator(world: World, run: WorkflowRun, key: str) -> RunTranslator:
    translator = RunTranslator(run_id=run.run_id, workflow_id=key)
    await _catch_up(world, translator)
    return translator


async def _catch_up(world: World, translator: RunTranslator) -> None:
    while True:
        page = await world.list_events(translator.run_id, after_seq=translator.last_seq)
        translator.feed(list(page.items))
        if not page.has_more:
            return


async def _follow(world: World, translator: RunTranslator, *, until: float) -> bool:
    """Wait for the next events of the run (until the loop time ``until``); False: timed out."""
    loop = asyncio.get_running_loop()
    remaining = until - loop.time()
    if remaining <= 0:
        return False
    before = translator.last_seq
    await world.wait_for_run(translator.run_id, after_seq=before, timeout=remaining)
    await _catch_up(world, translator)
    return translator.last_seq > before


async def _rest(request: web.Request, translator: RunTranslator) -> None:
    """Follow the run until it ends or rests on something outside it, or the wait runs out."""
    world = _world(request)
    until = asyncio.get_running_loop().time() + _wait_limit(request)
    while not translator.at_rest:
        if not await _follow(world, translator, until=until) and (
            asyncio.get_running_loop().time() >= until
        ):
            return


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


# -- result shapes ----------------------------------------------------------------------------


def _run_result(translator: RunTranslator) -> dict[str, Any]:
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
    out["eventTimestamp"] = _now_ms()
    out["payload"] = {
        "currentStep": current,
        "workflowState": {"status": status, "steps": translator.steps_json(with_input=False)},
    }
    return out


def _run_state(
    translator: RunTranslator,
    *,
    key: str,
    run: WorkflowRun | None,
    reserved: _Reserved | None = None,
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
    out.update(createdAt=_iso(created), updatedAt=_iso(updated), status=status)
    full: dict[str, Any] = {}
    if status == "success":
        full["result"] = translator.result
    if status == "failed":
        full["error"] = translator.error
    full["payload"] = translator.input
    full["steps"] = translator.steps_json(with_input=False)
    full["activeStepsPath"] = {
        name: [i] for i, name in enumerate(translator.order) if _active(translator, name)
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


def _active(translator: RunTranslator, name: str) -> bool:
    return translator.steps[name].status in ("running", "pending")


# -- workflows --------------------------------------------------------------------------------


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: dict[str, Any]})
async def list_workflows(request: web.Request) -> web.StreamResponse:
    """List the workflows (Mastra ``listWorkflows``), keyed by their Mastra ids.

    ``?partial=true`` leaves out steps and schemas and adds ``stepCount``.
    """
    catalog = await _catalog(request)
    partial = request.query.get("partial") == "true"
    return _json(
        {key: describe(catalog.entries[name], partial=partial) for key, name in _keys(catalog)}
    )


def _keys(catalog: MastraCatalog) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out = []
    for key, name in catalog.keys.items():
        if name not in seen:
            seen.add(name)
            out.append((key, name))
    return out


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: dict[str, Any]})
async def workflow_details(request: web.Request) -> web.StreamResponse:
    """One workflow's details (Mastra ``details``): parameters as a JSON Schema, steps."""
    _, entry = await _workflow(request)
    return _json(describe(entry))


# -- runs -------------------------------------------------------------------------------------


@route(
    errors=MASTRA_ERRORS,
    tags=("mastra",),
    query=CreateRunQuery,
    body=CreateRunBody,
    responses={200: RunIdResponse},
)
async def create_run(request: web.Request) -> web.StreamResponse:
    """Make a run id (given or a fresh UUID) for a later ``start``; a repeat is a no-op."""
    _, entry = await _workflow(request)
    query: CreateRunQuery = query_params(request, CreateRunQuery)
    body: CreateRunBody = await _optional_body(request, CreateRunBody)
    run_id = query.runId or str(uuid4())
    existing = await _existing(_world(request), run_id)
    if existing is not None:
        if existing.workflow_name != entry.name:
            raise _conflict(f"run {run_id!r} belongs to workflow {existing.workflow_name!r}")
        return _json(RunIdResponse(runId=run_id))
    pending = request.app[_PENDING]
    if run_id not in pending.runs:
        pending.add(run_id, _Reserved(entry.name, body.resourceId, datetime.now(UTC)))
    return _json(RunIdResponse(runId=run_id))


async def _start(
    request: web.Request, entry: CatalogEntry, run_id: str, body: StartBody, *, reserved: bool
) -> WorkflowRun | None:
    """Start ``run_id`` unless it exists (idempotent); the existing run, or None if new."""
    world = _world(request)
    existing = await _existing(world, run_id)
    pending = request.app[_PENDING]
    if existing is not None:
        if existing.workflow_name != entry.name:
            raise _conflict(f"run {run_id!r} belongs to workflow {existing.workflow_name!r}")
        return existing
    held = pending.runs.get(run_id)
    if reserved and held is None:
        raise _run_not_found()
    if held is not None and held.workflow != entry.name:
        raise _conflict(f"run {run_id!r} was created for workflow {held.workflow!r}")
    try:
        kwargs = bind_input(entry, body.inputData)
    except InputError as error:
        raise RequestError(400, str(error), code="invalid_input_data") from None
    resource_id = body.resourceId if body.resourceId is not None else (held and held.resource_id)
    try:
        await _control(request).start(
            entry.name,
            run_id=run_id,
            resource_id=resource_id or None,
            initial_state=body.initialState,
            **kwargs,
        )
    except EntityConflictError:  # started meanwhile by a retry of this same request
        again = await _existing(world, run_id)
        if again is None or again.workflow_name != entry.name:
            raise
        return again
    finally:
        pending.runs.pop(run_id, None)
    return None


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=StartBody,
    responses={200: Message},
)  # fmt: skip
async def start(request: web.Request) -> web.StreamResponse:
    """Start a run made by ``create-run`` and answer at once."""
    _, entry = await _workflow(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: StartBody = await _optional_body(request, StartBody)
    await _start(request, entry, query.runId, body, reserved=True)
    return _json(Message(message="Workflow run started"))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=CreateRunQuery, body=StartBody,
    responses={200: dict[str, Any]},
)  # fmt: skip
async def start_async(request: web.Request) -> web.StreamResponse:
    """Start a run and answer with its result once it ends or rests on something outside."""
    catalog, entry = await _workflow(request)
    query: CreateRunQuery = query_params(request, CreateRunQuery)
    body: StartBody = await _optional_body(request, StartBody)
    run_id = query.runId or str(uuid4())
    await _start(request, entry, run_id, body, reserved=False)
    world = _world(request)
    translator = await _translator(world, await world.get_run(run_id), catalog.key_of(entry.name))
    await _rest(request, translator)
    return _json(_run_result(translator))


async def _resume(
    request: web.Request, entry: CatalogEntry, run_id: str, body: ResumeBody, key: str
) -> tuple[RunTranslator, int]:
    """Resume the step (idempotent per data); the run's translator and where its new
    segment's records begin."""
    world = _world(request)
    run = await world.get_run(run_id)
    if run.workflow_name != entry.name:
        raise _run_not_found()
    translator = await _translator(world, run, key)
    step = body.step[-1] if isinstance(body.step, list) and body.step else body.step
    if not isinstance(step, str) or not step:
        suspended = translator.suspended_steps
        if not suspended:
            raise _conflict(_NOT_SUSPENDED)
        call = suspended[0]
    else:
        found = translator.steps.get(step)
        if found is None:
            raise _invalid("body.step", f"this run has no step {step!r}")
        call = found
    start_at = len(translator.records)
    if call.status != "suspended":
        if call.has_resume and call.resume_payload == body.resumeData:
            return translator, start_at  # a retry of the resume that already went through
        raise _conflict(_NOT_SUSPENDED)
    try:
        await _control(request).resume_step(
            run_id, call.step_call_id, body.resumeData, actor=principal(request)
        )
    except EntityConflictError:
        await _catch_up(world, translator)
        if not (call.has_resume and call.resume_payload == body.resumeData):
            raise _conflict(_NOT_SUSPENDED) from None
    return translator, start_at


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: Message},
)  # fmt: skip
async def resume(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step and answer at once."""
    catalog, entry = await _workflow(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await _optional_body(request, ResumeBody)
    await _resume(request, entry, query.runId, body, catalog.key_of(entry.name))
    return _json(Message(message="Workflow run resumed"))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: RunIdResponse},
)  # fmt: skip
async def resume_no_wait(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step and answer with the run id at once."""
    catalog, entry = await _workflow(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await _optional_body(request, ResumeBody)
    await _resume(request, entry, query.runId, body, catalog.key_of(entry.name))
    return _json(RunIdResponse(runId=query.runId))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: dict[str, Any]},
)  # fmt: skip
async def resume_async(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step; answer with the result once the run rests again."""
    catalog, entry = await _workflow(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await _optional_body(request, ResumeBody)
    translator, _ = await _resume(request, entry, query.runId, body, catalog.key_of(entry.name))
    await _catch_up(_world(request), translator)
    await _rest(request, translator)
    return _json(_run_result(translator))


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: Message})
async def cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a run (also fine for a run that has already finished)."""
    _, entry = await _workflow(request)
    run_id = request.match_info["runId"]
    if request.app[_PENDING].runs.pop(run_id, None) is not None:
        return _json(Message(message="Workflow run cancelled"))
    run = await _world(request).get_run(run_id)
    if run.workflow_name != entry.name:
        raise _run_not_found()
    try:
        await _control(request).cancel(
            run_id, "cancelled through the Mastra API", actor=principal(request)
        )
    except RunTerminalError:
        pass
    return _json(Message(message="Workflow run cancelled"))


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: Message})
async def delete_run(request: web.Request) -> web.StreamResponse:
    """Delete a finished run and everything of it (a run still going: 409)."""
    _, entry = await _workflow(request)
    run_id = request.match_info["runId"]
    if request.app[_PENDING].runs.pop(run_id, None) is not None:
        return _json(Message(message="Workflow run deleted"))
    run = await _world(request).get_run(run_id)
    if run.workflow_name != entry.name:
        raise _run_not_found()
    try:
        await _control(request).purge(run_id)
    except RunNotTerminalError:
        raise _conflict(
            f"run {run_id!r} is still {run.status}: cancel it before deleting it"
        ) from None
    return _json(Message(message="Workflow run deleted"))


@route(errors=MASTRA_ERRORS, tags=("mastra",), query=RunByIdQuery, responses={200: dict[str, Any]})
async def run_by_id(request: web.Request) -> web.StreamResponse:
    """A run's state (Mastra ``runById``); ``?fields=`` picks parts (``status`` is always in)."""
    catalog, entry = await _workflow(request)
    query: RunByIdQuery = query_params(request, RunByIdQuery)
    fields: frozenset[str] | None = None
    if query.fields is not None:
        fields = frozenset(f.strip() for f in query.fields.split(",") if f.strip())
        unknown = sorted(fields - _RUN_FIELDS)
        if unknown:
            raise _invalid(
                "query.fields",
                f"unknown field(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(_RUN_FIELDS))}",
            )
    run_id = request.match_info["runId"]
    key = catalog.key_of(entry.name)
    held = request.app[_PENDING].runs.get(run_id)
    if held is not None and held.workflow == entry.name:
        pending = RunTranslator(run_id=run_id, workflow_id=key)
        return _json(_run_state(pending, key=key, run=None, reserved=held, fields=fields))
    world = _world(request)
    run = await world.get_run(run_id)
    if run.workflow_name != entry.name:
        raise _run_not_found()
    translator = await _translator(world, run, key)
    return _json(_run_state(translator, key=key, run=run, fields=fields))


_STATUS_FILTER: dict[str, RunStatus] = {
    "success": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "canceled": RunStatus.CANCELLED,
    "pending": RunStatus.PENDING,
    "paused": RunStatus.SUSPENDED,
    "running": RunStatus.RUNNING,
    "waiting": RunStatus.RUNNING,
    "suspended": RunStatus.RUNNING,
}


def _date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"query.{name}", f"not an ISO date: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _paging(query: RunsQuery) -> tuple[int, int | None]:
    """``(offset, count)`` from ``page``/``perPage`` or the legacy ``limit``/``offset``."""
    if query.perPage is not None or query.page is not None:
        per_page = query.perPage if query.perPage is not None else 100
        if per_page <= 0:
            raise _invalid("query.perPage", "must be a positive integer")
        page = query.page or 0
        if page < 0:
            raise _invalid("query.page", "must be 0 or more")
        return page * per_page, per_page
    offset = query.offset or 0
    if query.limit is None or query.limit == "false":
        return offset, None
    try:
        limit = int(query.limit)
    except ValueError:
        raise _invalid("query.limit", "must be an integer or false") from None
    if limit <= 0:
        raise _invalid("query.limit", "must be a positive integer")
    return offset, limit


@route(errors=MASTRA_ERRORS, tags=("mastra",), query=RunsQuery, responses={200: RunsList})
async def list_runs(request: web.Request) -> web.StreamResponse:
    """A workflow's runs, newest first: ``fromDate``/``toDate``, ``resourceId``, ``status``,
    ``page``/``perPage`` (or ``limit``/``offset``); ``total`` counts every match."""
    catalog, entry = await _workflow(request)
    query: RunsQuery = query_params(request, RunsQuery)
    offset, count = _paging(query)
    wanted = query.status
    if wanted is not None and wanted not in _STATUS_FILTER:
        raise _invalid("query.status", f"unknown status {wanted!r}")
    after = _date(query.fromDate, "fromDate")
    before = _date(query.toDate, "toDate")
    key = catalog.key_of(entry.name)
    world = _world(request)
    runs: list[WorkflowRun] = []
    cursor: str | None = None
    while len(runs) < _MAX_LISTED:
        page = await world.list_runs(
            workflow_name=entry.name,
            status=_STATUS_FILTER[wanted] if wanted else None,
            resource_id=query.resourceId,
            created_after=after,
            created_before=before,
            limit=min(500, _MAX_LISTED - len(runs)),
            cursor=cursor,
        )
        runs.extend(page.items)
        if not page.has_more or page.cursor is None:
            break
        cursor = page.cursor
    states: list[dict[str, Any]] = []
    if wanted in ("running", "waiting", "suspended"):
        # These share worldflow's ``running``: tell them apart from the log, then page.
        for run in runs:
            translator = await _translator(world, run, key)
            if translator.mastra_status() == wanted:
                states.append(_listed(translator, key, run))
        total = len(states)
        states = states[offset : None if count is None else offset + count]
    else:
        total = len(runs)
        for run in runs[offset : None if count is None else offset + count]:
            states.append(_listed(await _translator(world, run, key), key, run))
    return _json(RunsList(runs=states, total=total))


def _listed(translator: RunTranslator, key: str, run: WorkflowRun) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workflowName": key,
        "runId": run.run_id,
        "snapshot": _run_state(translator, key=key, run=run),
        "createdAt": _iso(run.created_at),
        "updatedAt": _iso(run.updated_at),
    }
    if run.resource_id is not None:
        out["resourceId"] = run.resource_id
    return out


# -- streams ----------------------------------------------------------------------------------


async def _send_records(
    request: web.Request, translator: RunTranslator, start_at: int, *, close_on_rest: bool
) -> web.StreamResponse:
    """Stream the run's records from index ``start_at`` as they come, ``\\x1e``-separated,
    until the run ends (or rests, with ``close_on_rest``) or the wait runs out."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    world = _world(request)
    until = asyncio.get_running_loop().time() + _wait_limit(request)
    sent = start_at
    while True:
        if sent < len(translator.records):
            await response.write(
                b"".join(msgspec.json.encode(r) + _RS for r in translator.records[sent:])
            )
            sent = len(translator.records)
        if translator.terminal or (close_on_rest and translator.at_rest):
            break
        if not await _follow(world, translator, until=until) and (
            asyncio.get_running_loop().time() >= until
        ):
            break
    await response.write_eof()
    return response


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=StartBody,
    responses={200: None},
)  # fmt: skip
async def stream(request: web.Request) -> web.StreamResponse:
    """Start a run (unless started) and stream its records (closes on suspension by default).

    A run that has already finished: 409 (replay it with ``observe``).
    """
    catalog, entry = await _workflow(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: StartBody = await _optional_body(request, StartBody)
    existing = await _existing(_world(request), query.runId)
    if existing is not None and existing.status.is_terminal:
        status = RunTranslator(run_id=query.runId, workflow_id="")
        await _catch_up(_world(request), status)
        raise _conflict(
            f'This workflow run was already finished with status "{status.mastra_status()}". '
            "Use /observe to replay its stream.",
        )
    await _start(request, entry, query.runId, body, reserved=False)
    world = _world(request)
    translator = await _translator(world, await world.get_run(query.runId), entry.name)
    translator.workflow_id = catalog.key_of(entry.name)
    return await _send_records(request, translator, 0, close_on_rest=body.closeOnSuspend)


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: None},
)  # fmt: skip
async def resume_stream(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step and stream the records of what the run does next."""
    catalog, entry = await _workflow(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await _optional_body(request, ResumeBody)
    translator, start_at = await _resume(
        request, entry, query.runId, body, catalog.key_of(entry.name)
    )
    await _catch_up(_world(request), translator)
    return await _send_records(request, translator, start_at, close_on_rest=body.closeOnSuspend)


@route(errors=MASTRA_ERRORS, tags=("mastra",), query=ObserveQuery, responses={200: None})
async def observe(request: web.Request) -> web.StreamResponse:
    """Replay a run's records from ``offset``, then follow it until it ends or rests."""
    catalog, entry = await _workflow(request)
    query: ObserveQuery = query_params(request, ObserveQuery)
    if query.offset < 0:
        raise _invalid("query.offset", "must be 0 or more")
    world = _world(request)
    run = await world.get_run(query.runId)
    if run.workflow_name != entry.name:
        raise _run_not_found()
    translator = await _translator(world, run, catalog.key_of(entry.name))
    return await _send_records(request, translator, query.offset, close_on_rest=True)


def add_routes(app: web.Application) -> None:
    """Serve the Mastra workflows API under ``/api/workflows`` on ``app``."""
    app[_PENDING] = _Reservations()
    base = "/api/workflows"
    app.router.add_get(base, list_workflows)
    app.router.add_get(base + "/{workflowId}", workflow_details)
    app.router.add_post(base + "/{workflowId}/create-run", create_run)
    app.router.add_post(base + "/{workflowId}/start", start)
    app.router.add_post(base + "/{workflowId}/start-async", start_async)
    app.router.add_post(base + "/{workflowId}/resume", resume)
    app.router.add_post(base + "/{workflowId}/resume-async", resume_async)
    app.router.add_post(base + "/{workflowId}/resume-no-wait", resume_no_wait)
    app.router.add_post(base + "/{workflowId}/stream", stream)
    app.router.add_post(base + "/{workflowId}/resume-stream", resume_stream)
    app.router.add_post(base + "/{workflowId}/observe", observe)
    app.router.add_get(base + "/{workflowId}/runs", list_runs)
    app.router.add_get(base + "/{workflowId}/runs/{runId}", run_by_id)
    app.router.add_delete(base + "/{workflowId}/runs/{runId}", delete_run)
    app.router.add_post(base + "/{workflowId}/runs/{runId}/cancel", cancel)
