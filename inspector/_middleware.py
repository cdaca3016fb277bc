"""The middlewares every route passes through: errors (outer), auth, then ids (inner).

* Errors: a :class:`~worldflow.WorldflowError` becomes its ``http_status`` (404 unknown run or
  hook, 409 conflict, 400 bad input, ...), a :class:`RequestError` its own status, the
  ``TypeError`` / ``ValueError`` a control verb raises for a bad argument 400, an aiohttp
  ``HTTPException`` (unknown path, wrong method) its status, and anything else a 500 whose
  body carries an id that is also in the server log with the traceback. The body is drawn by
  the route's :class:`~worldflow.inspector._routes.ErrorShape`.
* Auth: with a token configured, every route but the public ones needs
  ``Authorization: Bearer <token>`` (or one of the route's ``token_headers``) or passes one of
  the app's extra :data:`~worldflow.inspector._keys.AUTH_CHECKS`. No credentials → 401, wrong
  ones → 403. Tokens are compared in constant time.
* Ids: a path or query parameter that names a run, a step, a hook token or a lease is held
  to the one id rule every world applies (:func:`~worldflow.worlds._ids.id_problem`) on the
  user-facing API families (native, Dapr, Mastra, webhooks, the inspector), reads included:
  a bad one is a 400 naming the parameter (``path.runId``, ``query.instanceID``), before the
  handler runs, with the code ``invalid_id`` (``id_too_long`` for the length), which each
  family's error shape answers in its own code (Dapr: ``ERR_INSTANCE_ID_INVALID``, as
  daprd does). So is a URL whose percent-escapes are not UTF-8 (decoded with replacement
  characters, such an id would silently become another one). The World API (tag ``world``)
  carries the World protocol as it is: its reads answer as a local world does (an id no run
  can have names no run: 404) and the world checks its writes field by field (400 naming
  the field, as a :class:`~worldflow.worlds.RemoteWorld`'s caller expects).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from urllib.parse import unquote_to_bytes

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from worldflow.errors import WorldError, WorldflowError, error_details
from worldflow.inspector._body import RequestError, too_large
from worldflow.inspector._keys import AUTH_CHECKS, SETTINGS
from worldflow.inspector._routes import DEFAULT_ERRORS, ErrorShape, Problem, RouteSpec, spec_of
from worldflow.worlds._ids import MAX_ID_LENGTH, id_problem

__all__ = [
    "ID_TOO_LONG",
    "INVALID_ID",
    "auth_middleware",
    "error_middleware",
    "id_middleware",
    "problem_response",
]

log = logging.getLogger("worldflow.inspector")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def _spec(request: web.Request) -> RouteSpec | None:
    info = request.match_info
    return spec_of(info.handler) if info.http_exception is None else None


def problem_response(request: web.Request, problem: Problem) -> web.Response:
    """The response for ``problem`` in the shape of the route ``request`` matched."""
    spec = _spec(request)
    shape: ErrorShape = spec.errors if spec is not None else DEFAULT_ERRORS
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return web.Response(
        status=problem.status,
        body=msgspec.json.encode(shape.render(problem)),
        content_type="application/json",
        headers=headers,
    )


# Where the control verbs check their arguments: a TypeError / ValueError raised there is the
# caller's bad input (it names the argument), not a bug (see worldflow._runtime.arguments).
_ARGUMENT_CHECKS = (
    os.path.join("_runtime", "arguments.py"),
    os.path.join("worlds", "_ids.py"),
    os.path.join("worlds", "_validation.py"),
)


def _is_argument_error(exc: BaseException) -> bool:
    if not isinstance(exc, TypeError | ValueError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_ARGUMENT_CHECKS)


def _problem_of(request: web.Request, exc: BaseException) -> Problem:
    if _is_argument_error(exc):
        return Problem(status=400, code="invalid_request", message=str(exc))
    if isinstance(exc, RequestError):
        return Problem(status=exc.status, code=exc.code, message=exc.message, field=exc.field)
    if isinstance(exc, WorldflowError) and (exc.http_status != 500 or isinstance(exc, WorldError)):
        # A world's own faults (a damaged log, a full disk) are the caller's to know, with
        # their code, so a remote world raises the same type; only bugs are hidden.
        details = error_details(exc) or None
        return Problem(status=exc.http_status, code=exc.code, message=exc.message, details=details)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].max_body_size
        error = too_large(limit)
        return Problem(status=413, code=error.code, message=error.message, field="body")
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return Problem(
            status=exc.status,
            code=_HTTP_CODES.get(exc.status, "http_error"),
            message=exc.text or exc.reason,
        )
    error_id = secrets.token_hex(8)
    log.error("error id %s: %s %s failed", error_id, request.method, request.path, exc_info=exc)
    return Problem(
        status=500,
        code="internal_error",
        message=f"internal server error; the server log has the details under id {error_id}",
        error_id=error_id,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every exception to a status and the route's error body (see the module doc)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are responses, not errors
        return problem_response(request, _problem_of(request, exc))
    except Exception as exc:
        return problem_response(request, _problem_of(request, exc))
    return response


def _presented(request: web.Request, spec: RouteSpec | None) -> list[str]:
    """Every credential the request carries (an ``Authorization`` of another scheme counts:
    it is a wrong credential, 403, not a missing one)."""
    found: list[str] = []
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        found.append(value.strip() if scheme.lower() == "bearer" else "")
    for name in spec.token_headers if spec is not None else ():
        extra = request.headers.get(name)
        if extra is not None:
            found.append(extra)
    return found


def _matches(presented: str, token: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), token.encode())


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require the app's token on every route that is not public (see the module doc)."""
    settings = request.app[SETTINGS]
    spec = _spec(request)
    if settings.token is None or (spec is not None and spec.public):
        return await handler(request)
    presented = _presented(request, spec)
    token = settings.token
    if any(_matches(p, token) for p in presented):
        return await handler(request)
    for check in request.app[AUTH_CHECKS]:
        if await check(request):
            return await handler(request)
    if not presented:
        raise RequestError(
            401,
            "this route needs the server's token: send `Authorization: Bearer <token>`",
            code="unauthorized",
        )
    raise RequestError(403, "the token sent does not match the server's token", code="forbidden")


# The parameters that carry ids, by their names on the routes (Dapr ``{id}`` and
# ``instanceID``, Mastra ``runId``, the native API's ``{runId}`` / ``{step}``, the World API's
# ``{run_id}``, ``{step_id}``, ``{lease_id}`` and ``token``, the inspector's ``{run_id}``).
# Names (workflows, events, streams, queues) follow the name rule, checked where they are used.
INVALID_ID = "invalid_id"
"""The code of an id parameter that breaks the id rule (control characters, lone
surrogates); an API family's error shape may answer it in its own code."""
ID_TOO_LONG = "id_too_long"
"""The code of an id parameter over :data:`~worldflow.worlds._ids.MAX_ID_LENGTH`."""

_ID_PATH = frozenset({"id", "run_id", "runId", "step", "step_id", "lease_id"})
_ID_QUERY = frozenset(
    {"instanceID", "runId", "run_id", "token", "resource_id", "parent_run_id", "forked_from"}
)


def _check_id(field: str, value: str) -> None:
    problem = id_problem(value)
    if problem is not None:
        # Its own codes, so each family answers in its own words (Dapr:
        # ERR_INSTANCE_ID_TOO_LONG / ERR_INSTANCE_ID_INVALID, as daprd does).
        code = ID_TOO_LONG if len(value) > MAX_ID_LENGTH else INVALID_ID
        raise RequestError(400, f"{field} {problem}", code=code, field=field)


@web.middleware
async def id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request whose id parameters break the id rule (see the module doc)."""
    spec = _spec(request)
    if spec is not None and "world" in spec.tags:
        return await handler(request)
    try:
        unquote_to_bytes(request.raw_path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400,
            f"the URL holds percent-escapes that are not UTF-8 ({exc.reason}); encode ids "
            "and names as UTF-8 before percent-encoding them",
            field="url",
        ) from None
    for name, value in request.match_info.items():
        if name in _ID_PATH:
            _check_id(f"path.{name}", value)
    query = request.query
    for name in _ID_QUERY.intersection(query.keys()):
        for value in query.getall(name):
            if value:  # an empty one is the route's to refuse (optional, or its own code)
                _check_id(f"query.{name}", value)
    return await handler(request)
