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

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from aiohttp import web

from worldflow.errors import (
    RunNotTerminalError,
    RunTerminalError,
)
from worldflow.inspector._body import query_params
from worldflow.inspector._keys import principal
from worldflow.inspector._routes import route
from worldflow.inspector.api._mastra_common import (
    MASTRA_ALIASES,
    MASTRA_ERRORS,
    MASTRA_WAIT,
    MAX_LISTED,
    PENDING,
    RUN_FIELDS,
    Reservations,
    Reserved,
    catalog_of,
    catch_up,
    conflict,
    control_of,
    existing_run,
    invalid,
    iso,
    json_response,
    optional_body,
    resume_run,
    run_of,
    run_result,
    run_state,
    start_run,
    translator_of,
    until_rest,
    workflow_of,
    world_of,
)
from worldflow.inspector.api.mastra_catalog import (
    MastraCatalog,
    describe,
)
from worldflow.inspector.api.mastra_records import RunTranslator
from worldflow.inspector.api.mastra_streams import observe, resume_stream, stream
from worldflow.inspector.api.mastra_wire import (
    CreateRunBody,
    CreateRunQuery,
    Message,
    ResumeBody,
    RunByIdQuery,
    RunIdQuery,
    RunIdResponse,
    RunsList,
    RunsQuery,
    StartBody,
)
from worldflow.worlds import RunStatus, WorkflowRun

__all__ = ["MASTRA_ALIASES", "MASTRA_ERRORS", "MASTRA_WAIT", "add_routes"]


# -- workflows --------------------------------------------------------------------------------


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: dict[str, Any]})
async def list_workflows(request: web.Request) -> web.StreamResponse:
    """List the workflows (Mastra ``listWorkflows``), keyed by their Mastra ids.

    ``?partial=true`` leaves out steps and schemas and adds ``stepCount``.
    """
    catalog = await catalog_of(request)
    partial = request.query.get("partial") == "true"
    return json_response(
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
    _, entry = await workflow_of(request)
    return json_response(describe(entry))


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
    _, entry = await workflow_of(request)
    query: CreateRunQuery = query_params(request, CreateRunQuery)
    body: CreateRunBody = await optional_body(request, CreateRunBody)
    run_id = query.runId or str(uuid4())
    existing = await existing_run(world_of(request), run_id)
    if existing is not None:
        if existing.workflow_name != entry.name:
            raise conflict(f"run {run_id!r} belongs to workflow {existing.workflow_name!r}")
        return json_response(RunIdResponse(runId=run_id))
    pending = request.app[PENDING]
    if run_id not in pending.runs:
        pending.add(run_id, Reserved(entry.name, body.resourceId, datetime.now(UTC)))
    return json_response(RunIdResponse(runId=run_id))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=StartBody,
    responses={200: Message},
)  # fmt: skip
async def start(request: web.Request) -> web.StreamResponse:
    """Start a run made by ``create-run`` and answer at once."""
    _, entry = await workflow_of(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: StartBody = await optional_body(request, StartBody)
    await start_run(request, entry, query.runId, body, reserved=True)
    return json_response(Message(message="Workflow run started"))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=CreateRunQuery, body=StartBody,
    responses={200: dict[str, Any]},
)  # fmt: skip
async def start_async(request: web.Request) -> web.StreamResponse:
    """Start a run and answer with its result once it ends or rests on something outside."""
    catalog, entry = await workflow_of(request)
    query: CreateRunQuery = query_params(request, CreateRunQuery)
    body: StartBody = await optional_body(request, StartBody)
    run_id = query.runId or str(uuid4())
    await start_run(request, entry, run_id, body, reserved=False)
    world = world_of(request)
    translator = await translator_of(world, await world.get_run(run_id), catalog.key_of(entry.name))
    await until_rest(request, translator)
    return json_response(run_result(translator))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: Message},
)  # fmt: skip
async def resume(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step and answer at once."""
    catalog, entry = await workflow_of(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await optional_body(request, ResumeBody)
    await resume_run(request, entry, query.runId, body, catalog.key_of(entry.name))
    return json_response(Message(message="Workflow run resumed"))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: RunIdResponse},
)  # fmt: skip
async def resume_no_wait(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step and answer with the run id at once."""
    catalog, entry = await workflow_of(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await optional_body(request, ResumeBody)
    await resume_run(request, entry, query.runId, body, catalog.key_of(entry.name))
    return json_response(RunIdResponse(runId=query.runId))


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: dict[str, Any]},
)  # fmt: skip
async def resume_async(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step; answer with the result once the run rests again."""
    catalog, entry = await workflow_of(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await optional_body(request, ResumeBody)
    translator, _ = await resume_run(request, entry, query.runId, body, catalog.key_of(entry.name))
    await catch_up(world_of(request), translator)
    await until_rest(request, translator)
    return json_response(run_result(translator))


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: Message})
async def cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a run (also fine for a run that has already finished)."""
    _, entry = await workflow_of(request)
    run_id = request.match_info["runId"]
    if request.app[PENDING].runs.pop(run_id, None) is not None:
        return json_response(Message(message="Workflow run cancelled"))
    await run_of(world_of(request), entry, run_id)  # 404 unless one of its runs
    try:
        await control_of(request).cancel(
            run_id, "cancelled through the Mastra API", actor=principal(request)
        )
    except RunTerminalError:
        pass
    return json_response(Message(message="Workflow run cancelled"))


@route(errors=MASTRA_ERRORS, tags=("mastra",), responses={200: Message})
async def delete_run(request: web.Request) -> web.StreamResponse:
    """Delete a finished run and everything of it (a run still going: 409)."""
    _, entry = await workflow_of(request)
    run_id = request.match_info["runId"]
    if request.app[PENDING].runs.pop(run_id, None) is not None:
        return json_response(Message(message="Workflow run deleted"))
    run = await run_of(world_of(request), entry, run_id)
    try:
        await control_of(request).purge(run_id)
    except RunNotTerminalError:
        raise conflict(
            f"run {run_id!r} is still {run.status}: cancel it before deleting it"
        ) from None
    return json_response(Message(message="Workflow run deleted"))


@route(errors=MASTRA_ERRORS, tags=("mastra",), query=RunByIdQuery, responses={200: dict[str, Any]})
async def run_by_id(request: web.Request) -> web.StreamResponse:
    """A run's state (Mastra ``runById``); ``?fields=`` picks parts (``status`` is always in)."""
    catalog, entry = await workflow_of(request)
    query: RunByIdQuery = query_params(request, RunByIdQuery)
    fields: frozenset[str] | None = None
    if query.fields is not None:
        fields = frozenset(f.strip() for f in query.fields.split(",") if f.strip())
        unknown = sorted(fields - RUN_FIELDS)
        if unknown:
            raise invalid(
                "query.fields",
                f"unknown field(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(RUN_FIELDS))}",
            )
    run_id = request.match_info["runId"]
    key = catalog.key_of(entry.name)
    held = request.app[PENDING].runs.get(run_id)
    if held is not None and held.workflow == entry.name:
        pending = RunTranslator(run_id=run_id, workflow_id=key)
        return json_response(run_state(pending, key=key, run=None, reserved=held, fields=fields))
    world = world_of(request)
    run = await run_of(world, entry, run_id)
    translator = await translator_of(world, run, key)
    return json_response(run_state(translator, key=key, run=run, fields=fields))


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
        raise invalid(f"query.{name}", f"not an ISO date: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _paging(query: RunsQuery) -> tuple[int, int | None]:
    """``(offset, count)`` from ``page``/``perPage`` or the legacy ``limit``/``offset``."""
    if query.perPage is not None or query.page is not None:
        per_page = query.perPage if query.perPage is not None else 100
        if per_page <= 0:
            raise invalid("query.perPage", "must be a positive integer")
        page = query.page or 0
        if page < 0:
            raise invalid("query.page", "must be 0 or more")
        return page * per_page, per_page
    offset = query.offset or 0
    if query.limit is None or query.limit == "false":
        return offset, None
    try:
        limit = int(query.limit)
    except ValueError:
        raise invalid("query.limit", "must be an integer or false") from None
    if limit <= 0:
        raise invalid("query.limit", "must be a positive integer")
    return offset, limit


@route(errors=MASTRA_ERRORS, tags=("mastra",), query=RunsQuery, responses={200: RunsList})
async def list_runs(request: web.Request) -> web.StreamResponse:
    """A workflow's runs, newest first: ``fromDate``/``toDate``, ``resourceId``, ``status``,
    ``page``/``perPage`` (or ``limit``/``offset``); ``total`` counts every match."""
    catalog, entry = await workflow_of(request)
    query: RunsQuery = query_params(request, RunsQuery)
    offset, count = _paging(query)
    wanted = query.status
    if wanted is not None and wanted not in _STATUS_FILTER:
        raise invalid("query.status", f"unknown status {wanted!r}")
    after = _date(query.fromDate, "fromDate")
    before = _date(query.toDate, "toDate")
    key = catalog.key_of(entry.name)
    world = world_of(request)
    runs: list[WorkflowRun] = []
    cursor: str | None = None
    while len(runs) < MAX_LISTED:
        page = await world.list_runs(
            workflow_name=entry.name,
            status=_STATUS_FILTER[wanted] if wanted else None,
            resource_id=query.resourceId,
            created_after=after,
            created_before=before,
            limit=min(500, MAX_LISTED - len(runs)),
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
            translator = await translator_of(world, run, key)
            if translator.mastra_status() == wanted:
                states.append(_listed(translator, key, run))
        total = len(states)
        states = states[offset : None if count is None else offset + count]
    else:
        total = len(runs)
        for run in runs[offset : None if count is None else offset + count]:
            states.append(_listed(await translator_of(world, run, key), key, run))
    return json_response(RunsList(runs=states, total=total))


def _listed(translator: RunTranslator, key: str, run: WorkflowRun) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workflowName": key,
        "runId": run.run_id,
        "snapshot": run_state(translator, key=key, run=run),
        "createdAt": iso(run.created_at),
        "updatedAt": iso(run.updated_at),
    }
    if run.resource_id is not None:
        out["resourceId"] = run.resource_id
    return out


def add_routes(app: web.Application) -> None:
    """Serve the Mastra workflows API under ``/api/workflows`` on ``app``."""
    app[PENDING] = Reservations()
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
