"""The Dapr workflow HTTP API: the seed's forms and the forms daprd serves, from one router.

Served under ``/v1.0``, ``/v1.0-beta1`` and ``/v1.0-alpha1`` (``{x}`` is the workflow type or
the component name; daprd ignores the component, and so does this app):

=========================================================  =========================================
``POST /workflows/{x}/{y}/start[?instanceID=]``            start (see *the collision* below) → 202
                                                           ``{"instanceID"}`` + ``Location``
``GET /workflows/{x}/{id}``                                the instance → 200
``POST /workflows/{x}/{id}/raiseEvent/{eventName}``        raise an event (daprd) → 202
``POST /workflows/{x}/{id}/raiseEvent?eventName=``         raise an event (seed; or the JSON body
                                                           ``{"eventName", "eventData"}``) → 202
``POST /workflows/{x}/{id}/pause`` and ``…/suspend``       suspend → 202
``POST /workflows/{x}/{id}/resume``                        resume (a no-op unless suspended) → 202
``POST /workflows/{x}/{id}/terminate``                     terminate (a body is the output) → 202
``POST /workflows/{x}/{id}/purge``, ``DELETE …/{x}/{id}``  purge a finished instance → 202 / 200
``GET /v1.0/metadata``                                     sidecar metadata (the JS SDK polls it)
=========================================================  =========================================

**The collision.** ``POST /workflows/{A}/{B}/start`` is (component, workflow name, id in the
query) in daprd's API and (workflow type, instance id) in the seed's. The daprd form is meant
when the query has ``instanceID``, or ``A`` is ``dapr``, or the prefix is ``v1.0-beta1`` or
``v1.0-alpha1`` (the seed only ever used ``v1.0``); otherwise it is the seed form. So a workflow
type literally named ``dapr``, started seed-style under ``/v1.0``, is the one spelling read the
other way: start it daprd-style instead.

**An existing id.** The seed form answers 409 for any existing instance. The daprd form answers
409 while the instance is active (daprd answers 500 there; a 5xx makes clients retry) and, like
daprd, starts a finished instance's id again as a new instance: the old one is purged first.

**Bodies.** A start body is the workflow's one argument (no body: no argument), a raised
event's body its payload, a terminate body the output: JSON when it parses as JSON, else the
text (the JS SDK sends strings as ``text/plain``). ``dapr-workflow-metadata: k=v; k2=v2``
headers on a start (repeatable) become the run's searchable metadata, shown on GET as
``properties["dapr.workflow.metadata.k"]``.

**Statuses.** ``pending`` → ``PENDING``, ``running`` → ``RUNNING``, ``suspended`` →
``SUSPENDED``, ``completed`` → ``COMPLETED``, ``failed`` → ``FAILED``, ``cancelled`` →
``TERMINATED``, ``stalled`` → ``STALLED``. Errors are daprd's ``{"errorCode", "message"}``.
Auth: ``Authorization: Bearer`` or ``dapr-api-token``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import msgspec
from aiohttp import web

import worldflow
from worldflow.errors import (
    EntityConflictError,
    RunNotFoundError,
    RunTerminalError,
    WorkflowNotRegisteredError,
)
from worldflow.inspector._body import RequestError, query_params, read_body
from worldflow.inspector._keys import CONTROL, ControlPlane, principal
from worldflow.inspector._middleware import ID_TOO_LONG, INVALID_ID
from worldflow.inspector._routes import ErrorShape, Problem, route
from worldflow.worlds import RunStatus

__all__ = ["PREFIXES", "add_routes"]

PREFIXES = ("/v1.0", "/v1.0-beta1", "/v1.0-alpha1")
"""The API versions daprd serves the workflow routes under (identical handlers)."""

T = TypeVar("T")
H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])

RuntimeStatus = Literal[
    "RUNNING", "COMPLETED", "FAILED", "TERMINATED", "PENDING", "SUSPENDED", "STALLED", "UNKNOWN"
]

_STATUS: dict[str, RuntimeStatus] = {
    "pending": "PENDING",
    "running": "RUNNING",
    "suspended": "SUSPENDED",
    "completed": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "TERMINATED",
    "stalled": "STALLED",
}
_MAX_ID = 64
_ID = re.compile(r"^[\w-]+$")  # unicode letters and digits, `_` and `-`, as daprd accepts
_METADATA_PREFIX = "dapr.workflow.metadata."


class DaprError(msgspec.Struct, frozen=True, kw_only=True):
    """daprd's error body."""

    errorCode: str  # wire name
    message: str


class Empty(msgspec.Struct, frozen=True):
    """``{}``: what daprd answers on a 202 without a result."""


class StartAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The started instance's id."""

    instanceID: str  # wire name


class WorkflowState(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /workflows/{x}/{id}``: daprd's ``GetWorkflowResponse``.

    ``properties`` (all strings): ``dapr.workflow.input`` and ``dapr.workflow.output`` (JSON
    text; no output for a failed run), ``dapr.workflow.failure.error_type`` and
    ``…error_message`` for a failed run, ``dapr.workflow.metadata.<key>`` for each metadata
    entry, ``worldflow.completed_at`` once finished.
    """

    instanceID: str  # wire names, as daprd spells them
    workflowName: str
    createdAt: datetime
    lastUpdatedAt: datetime
    runtimeStatus: RuntimeStatus
    properties: dict[str, str]


class Component(msgspec.Struct, frozen=True, kw_only=True):
    """One component in the metadata."""

    name: str
    type: str
    version: str


class SidecarMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1.0/metadata``: enough of daprd's answer for the SDKs' readiness probe."""

    id: str
    runtimeVersion: str  # wire names
    enabledFeatures: list[str]
    components: list[Component]
    extended: dict[str, str]


InstanceId = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID, pattern=r"^[\w-]+$")]
"""An instance id as daprd accepts it on create: letters, digits, ``_`` and ``-``, ≤ 64."""


class StartQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Query of a start: daprd's instance id; ``appID`` is accepted and ignored."""

    instanceID: InstanceId | None = None  # wire names
    appID: str | None = None


class AppQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``appID`` (cross-app calls in daprd) is accepted and ignored."""

    appID: str | None = None  # wire name


class RaiseQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The seed form's event name."""

    eventName: str | None = None  # wire names
    appID: str | None = None


class RaiseEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The seed form's alternative body: the event's name and data together."""

    eventName: str  # wire names
    eventData: Any = None


_BY_CODE = {
    "run_not_found": "ERR_INSTANCE_ID_NOT_FOUND",
    "workflow_not_registered": "ERR_WORKFLOW_NOT_FOUND",
    "unauthorized": "ERR_UNAUTHORIZED",
    "forbidden": "ERR_UNAUTHORIZED",
    "body_too_large": "ERR_BODY_TOO_LARGE",
    "invalid_request": "ERR_MALFORMED_REQUEST",
    INVALID_ID: "ERR_INSTANCE_ID_INVALID",  # the shared id rule, on the instance id
    ID_TOO_LONG: "ERR_INSTANCE_ID_TOO_LONG",
    "serialization_error": "ERR_MALFORMED_REQUEST",
    "internal_error": "ERR_INTERNAL",
}
_BY_STATUS = {
    400: "ERR_MALFORMED_REQUEST",
    404: "ERR_NOT_FOUND",
    405: "ERR_METHOD_NOT_ALLOWED",
    409: "ERR_CONFLICT",
}


def _render(problem: Problem) -> DaprError:
    code = problem.code
    if not code.startswith("ERR_"):
        code = _BY_CODE.get(code) or _BY_STATUS.get(problem.status) or "ERR_INTERNAL"
    return DaprError(errorCode=code, message=problem.message)


DAPR_ERRORS = ErrorShape(DaprError, _render)
"""daprd's ``{"errorCode", "message"}`` error body."""


def dapr_route(**options: Any) -> Callable[[H], H]:
    """:func:`route` with the Dapr family's auth header, error body and tag."""
    return route(token_headers=("dapr-api-token",), errors=DAPR_ERRORS, tags=("dapr",), **options)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(value),
        content_type="application/json",
        headers=headers,
    )


def _accepted() -> web.Response:
    return _json(Empty(), status=202)


def _value(body: bytes) -> Any:
    """A body as a value: JSON when it parses, else text (else the bytes)."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def _text(value: Any) -> str:
    """A value as JSON text (a property value); what JSON cannot hold goes as its repr."""
    return msgspec.json.encode(value, enc_hook=repr).decode()


def _check_id(instance_id: str, field: str) -> None:
    if not instance_id:
        raise RequestError(
            400, "no instance ID was provided", code="ERR_INSTANCE_ID_PROVIDED_MISSING", field=field
        )
    if len(instance_id) > _MAX_ID:
        raise RequestError(
            400,
            f"workflow instance ID exceeds the max length of {_MAX_ID} characters",
            code="ERR_INSTANCE_ID_TOO_LONG",
            field=field,
        )
    if not _ID.match(instance_id):
        raise RequestError(
            400,
            f"workflow instance ID '{instance_id}' is invalid: only alphanumeric, underscore "
            "and dash characters are allowed",
            code="ERR_INSTANCE_ID_INVALID",
            field=field,
        )


def _not_found(instance_id: str) -> RequestError:
    return RequestError(
        404,
        f"unable to find workflow with the provided instance ID: {instance_id}",
        code="ERR_INSTANCE_ID_NOT_FOUND",
    )


async def _act(instance_id: str, code: str, verb: str, action: Awaitable[T]) -> T:
    """Await ``action`` with daprd's error codes: unknown id → 404, a conflict → 409."""
    try:
        return await action
    except RunNotFoundError:
        raise _not_found(instance_id) from None
    except EntityConflictError as exc:
        raise RequestError(
            409, f"error {verb} workflow '{instance_id}': {exc.message}", code=code
        ) from None


def _metadata(request: web.Request) -> dict[str, str]:
    """``dapr-workflow-metadata: k=v; k2=v2`` headers (repeatable) as a dict."""
    found: dict[str, str] = {}
    for header in request.headers.getall("dapr-workflow-metadata", []):
        for item in header.split(";"):
            key, sep, value = item.strip().partition("=")
            if not item.strip():
                continue
            if not sep or not key.strip():
                raise RequestError(
                    400,
                    f"dapr-workflow-metadata takes `key=value; key2=value2`, not {header!r}",
                    field="header.dapr-workflow-metadata",
                )
            found[key.strip()] = value.strip()
    return found


def _is_daprd_form(request: web.Request, component: str, query: StartQuery) -> bool:
    beta = "/v1.0-beta1/workflows/" in request.path or "/v1.0-alpha1/workflows/" in request.path
    return query.instanceID is not None or component == "dapr" or beta


async def _start_new(
    control: ControlPlane, name: str, instance_id: str, body: bytes, metadata: dict[str, str]
) -> None:
    args = () if not body else (_value(body),)
    try:
        await control.start(name, *args, run_id=instance_id, metadata=metadata)
    except TypeError as exc:
        raise RequestError(
            400, f"the body does not fit workflow {name!r}: {exc}", field="body"
        ) from None
    except WorkflowNotRegisteredError as exc:
        raise RequestError(404, exc.message, code="ERR_WORKFLOW_NOT_FOUND") from None


@dapr_route(
    query=StartQuery,
    raw_body="*/*",
    responses={202: StartAccepted},
    errors_on=(404, 409),
)
async def start(request: web.Request) -> web.Response:
    """Start a workflow instance (the seed's form or daprd's; see the collision rule).

    202 with the instance id and a ``Location`` header (the instance's GET URL). An existing
    id: 409 in the seed form; in daprd's form 409 while active, a fresh start once finished.
    """
    control = request.app[CONTROL]
    first, second = request.match_info["x"], request.match_info["y"]
    try:
        query = query_params(request, StartQuery)
    except RequestError as exc:
        if exc.field == "query.instanceID":  # daprd's own codes for a bad id
            _check_id(request.query.get("instanceID", ""), exc.field)
        raise
    daprd = _is_daprd_form(request, first, query)
    if daprd:
        name = second
        instance_id = query.instanceID if query.instanceID is not None else str(uuid.uuid4())
        field = "query.instanceID"
    else:
        name, instance_id, field = first, second, "path.y"
    _check_id(instance_id, field)
    if not name:
        raise RequestError(400, "workflow name is not configured", code="ERR_WORKFLOW_NAME_MISSING")
    metadata = _metadata(request)
    body = await read_body(request)
    try:
        existing = await (await control.get_run(instance_id)).info()
    except RunNotFoundError:
        existing = None
    if existing is not None:
        if not daprd or not existing.status.is_terminal:
            raise RequestError(
                409,
                f"error starting workflow '{name}': an {'active ' if daprd else ''}workflow "
                f"with ID '{instance_id}' already exists",
                code="ERR_START_WORKFLOW",
            )
        await _act(instance_id, "ERR_START_WORKFLOW", "replacing", control.purge(instance_id))
    await _act(
        instance_id,
        "ERR_START_WORKFLOW",
        "starting",
        _start_new(control, name, instance_id, body, metadata),
    )
    base = request.path.rsplit("/", 2)[0]  # …/workflows/{x}/{y}/start → …/workflows/{x}
    location = f"{base}/{quote(instance_id, safe='')}"
    return _json(StartAccepted(instanceID=instance_id), 202, {"Location": location})


def _state(info: worldflow.RunInfo) -> WorkflowState:
    properties: dict[str, str] = {}
    arguments = info.input
    if isinstance(arguments, dict) and arguments:
        value = next(iter(arguments.values())) if len(arguments) == 1 else arguments
        properties["dapr.workflow.input"] = _text(value)
    if info.status is RunStatus.FAILED:
        if info.error is not None:
            properties["dapr.workflow.failure.error_type"] = info.error.name
            properties["dapr.workflow.failure.error_message"] = info.error.message
    elif info.status.is_terminal:
        properties["dapr.workflow.output"] = _text(info.output)
    if info.completed_at is not None:
        properties["worldflow.completed_at"] = info.completed_at.isoformat()
    for key, value in info.metadata.items():
        properties[_METADATA_PREFIX + key] = value
    return WorkflowState(
        instanceID=info.run_id,
        workflowName=info.workflow_name,
        createdAt=info.created_at,
        lastUpdatedAt=info.updated_at,
        runtimeStatus=_STATUS.get(str(info.status), "UNKNOWN"),
        properties=properties,
    )


@dapr_route(query=AppQuery, responses={200: WorkflowState}, errors_on=(404,))
async def get(request: web.Request) -> web.Response:
    """An instance's status, timestamps, input, output or failure, and metadata."""
    instance_id = request.match_info["id"]
    query_params(request, AppQuery)
    control = request.app[CONTROL]
    try:
        info = await (await control.get_run(instance_id)).info()
    except RunNotFoundError:
        raise _not_found(instance_id) from None
    return _json(_state(info))


async def _raise(request: web.Request, name: str, payload: Any) -> web.Response:
    instance_id = request.match_info["id"]
    if not name:
        raise RequestError(
            400, "missing workflow event name", code="ERR_WORKFLOW_EVENT_NAME_MISSING"
        )
    control = request.app[CONTROL]
    await _act(
        instance_id,
        "ERR_RAISE_EVENT_WORKFLOW",
        "raising event on",
        control.raise_event(instance_id, name, payload, actor=principal(request)),
    )
    return _accepted()


@dapr_route(query=AppQuery, raw_body="*/*", responses={202: Empty}, errors_on=(404, 409))
async def raise_event(request: web.Request) -> web.Response:
    """Raise the event ``eventName`` for an instance; the body is its payload (daprd form)."""
    query_params(request, AppQuery)
    body = await read_body(request)
    return await _raise(request, request.match_info["event"], _value(body) if body else None)


@dapr_route(query=RaiseQuery, raw_body="*/*", responses={202: Empty}, errors_on=(404, 409))
async def raise_event_seed(request: web.Request) -> web.Response:
    """Raise an event for an instance (the seed form: no event name in the path).

    The name is ``?eventName=`` with the body as the payload, or the body is the envelope
    ``{"eventName": ..., "eventData": ...}``.
    """
    query = query_params(request, RaiseQuery)
    body = await read_body(request)
    if query.eventName is not None:
        return await _raise(request, query.eventName, _value(body) if body else None)
    try:
        envelope = msgspec.json.decode(body, type=RaiseEnvelope)
    except msgspec.DecodeError:
        raise RequestError(
            400,
            'name the event with ?eventName=NAME, or send {"eventName": ..., "eventData": ...}',
            code="ERR_WORKFLOW_EVENT_NAME_MISSING",
            field="query.eventName",
        ) from None
    return await _raise(request, envelope.eventName, envelope.eventData)


@dapr_route(query=AppQuery, responses={202: Empty}, errors_on=(404, 409))
async def pause(request: web.Request) -> web.Response:
    """Suspend an instance (``pause`` in daprd, ``suspend`` in the seed)."""
    query_params(request, AppQuery)
    instance_id = request.match_info["id"]
    control = request.app[CONTROL]
    await _act(
        instance_id,
        "ERR_PAUSE_WORKFLOW",
        "pausing",
        control.suspend(instance_id, actor=principal(request)),
    )
    return _accepted()


@dapr_route(query=AppQuery, responses={202: Empty}, errors_on=(404, 409))
async def resume(request: web.Request) -> web.Response:
    """Resume a suspended instance; a no-op for one that is not suspended."""
    query_params(request, AppQuery)
    instance_id = request.match_info["id"]
    control = request.app[CONTROL]
    await _act(
        instance_id,
        "ERR_RESUME_WORKFLOW",
        "resuming",
        control.resume(instance_id, actor=principal(request)),
    )
    return _accepted()


@dapr_route(query=AppQuery, raw_body="*/*", responses={202: Empty}, errors_on=(404, 409))
async def terminate(request: web.Request) -> web.Response:
    """Terminate an instance; a body is kept as its output (the seed's rule).

    Terminating a finished instance does nothing (202), as in daprd.
    """
    query_params(request, AppQuery)
    instance_id = request.match_info["id"]
    body = await read_body(request)
    control = request.app[CONTROL]
    output = _value(body) if body else None
    await _act(
        instance_id,
        "ERR_TERMINATE_WORKFLOW",
        "terminating",
        _cancel(control, instance_id, output, principal(request)),
    )
    return _accepted()


async def _cancel(control: ControlPlane, instance_id: str, output: Any, actor: str | None) -> None:
    try:
        await control.cancel(
            instance_id, "terminated over the Dapr API", output=output, actor=actor
        )
    except RunTerminalError:
        await control.get_run(instance_id)  # finished already: fine, if it exists


async def _purge(request: web.Request) -> None:
    query_params(request, AppQuery)
    instance_id = request.match_info["id"]
    control = request.app[CONTROL]
    await _act(instance_id, "ERR_PURGE_WORKFLOW", "purging", control.purge(instance_id))


@dapr_route(query=AppQuery, responses={202: Empty}, errors_on=(404, 409))
async def purge(request: web.Request) -> web.Response:
    """Delete a finished instance's state (daprd form). A running one → 409."""
    await _purge(request)
    return _accepted()


@dapr_route(query=AppQuery, responses={200: None}, errors_on=(404, 409))
async def purge_seed(request: web.Request) -> web.Response:
    """Delete a finished instance's state (the seed's ``DELETE``). A running one → 409."""
    await _purge(request)
    return web.Response(status=200)


@dapr_route(responses={200: SidecarMetadata})
async def metadata(request: web.Request) -> web.Response:
    """Sidecar metadata: the Dapr SDKs wait for a 2xx here before their first call."""
    return _json(
        SidecarMetadata(
            id="worldflow",
            runtimeVersion=f"worldflow/{worldflow.__version__}",
            enabledFeatures=[],
            components=[Component(name="dapr", type="workflow.worldflow", version="v1")],
            extended={"server": "worldflow"},
        )
    )


def add_routes(app: web.Application) -> None:
    """Add the Dapr workflow routes under every prefix, and ``GET /v1.0/metadata``."""
    for prefix in PREFIXES:
        base = f"{prefix}/workflows"
        app.router.add_post(base + "/{x}/{y}/start", start)
        app.router.add_get(base + "/{x}/{id}", get)
        app.router.add_delete(base + "/{x}/{id}", purge_seed)
        app.router.add_post(base + "/{x}/{id}/raiseEvent/{event}", raise_event)
        app.router.add_post(base + "/{x}/{id}/raiseEvent", raise_event_seed)
        app.router.add_post(base + "/{x}/{id}/pause", pause)
        app.router.add_post(base + "/{x}/{id}/suspend", pause)
        app.router.add_post(base + "/{x}/{id}/resume", resume)
        app.router.add_post(base + "/{x}/{id}/terminate", terminate)
        app.router.add_post(base + "/{x}/{id}/purge", purge)
    app.router.add_get("/v1.0/metadata", metadata)
