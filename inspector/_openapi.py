"""``/openapi.json``: an OpenAPI 3.1 document built from the routes' :class:`RouteSpec`.

Nothing here is written by hand per route: paths and methods come from the router, path
parameters from the route's pattern, bodies, query parameters, responses and error bodies
from the msgspec types the handlers decode and encode (``msgspec.json.schema_components``).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

import worldflow
from worldflow.inspector._routes import RouteSpec, spec_of

__all__ = ["openapi_document"]

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_REF = "#/components/schemas/{name}"
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad request: the message names the field",
    401: "No credentials",
    403: "Wrong credentials",
    404: "Not found",
    409: "Conflict",
    413: "Body over the size limit",
    502: "The run ended without answering (manual webhook)",
    504: "The run did not answer in time (manual webhook)",
    500: "Internal error (a bug; the body carries the id logged with it)",
}


def _describes_its_wire(spec: RouteSpec) -> bool:
    """Whether a route declared what it takes or returns (HTML pages declare only auth)."""
    return bool(spec.responses) or any(
        t is not None for t in (spec.body, spec.raw_body, spec.query)
    )


def _routes(app: web.Application) -> list[tuple[str, str, RouteSpec]]:
    found: list[tuple[str, str, RouteSpec]] = []
    for r in app.router.routes():
        spec = spec_of(r.handler)
        if spec is None or r.method == "HEAD" or not _describes_its_wire(spec):
            continue
        info = r.resource.get_info() if r.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if not isinstance(path, str):
            continue
        methods = _ANY_METHOD if r.method == "*" else (r.method,)
        found.extend((method, path, spec) for method in methods)
    return found


def _types(specs: list[RouteSpec]) -> list[Any]:
    types: list[Any] = []
    for spec in specs:
        types.extend(t for t in (spec.body, spec.query, spec.errors.schema) if t is not None)
        types.extend(t for t in spec.responses.values() if t is not None)
    unique: list[Any] = []
    for t in types:
        if t not in unique:
            unique.append(t)
    return unique


def _query_parameters(schema: dict[str, Any], components: dict[str, Any]) -> list[Any]:
    target = schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = components[ref.rsplit("/", 1)[1]]
    required = set(target.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": sub}
        for name, sub in target.get("properties", {}).items()
    ]


def _operation(
    method: str, path: str, spec: RouteSpec, schema: dict[Any, Any], errors: set[int]
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": f"{method.lower()}_{spec.handler_name}"}
    if spec.summary:
        op["summary"] = spec.summary
    if spec.description:
        op["description"] = spec.description
    if spec.tags:
        op["tags"] = list(spec.tags)
    params: list[Any] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    if spec.query is not None:
        params.extend(_query_parameters(schema[spec.query], schema["__components__"]))
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema[spec.body]}},
        }
    elif spec.raw_body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {spec.raw_body: {"schema": {"type": "string"}}},
        }
    responses: dict[str, Any] = {}
    for status, body in spec.responses.items():
        entry: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "Response")}
        if body is not None:
            entry["content"] = {"application/json": {"schema": schema[body]}}
        responses[str(status)] = entry
    error_schema = {"application/json": {"schema": schema[spec.errors.schema]}}
    statuses = set(errors)
    if not spec.public:
        statuses |= {401, 403}
    if spec.body is not None or spec.raw_body is not None:
        statuses |= {400, 413}
    if spec.query is not None:
        statuses.add(400)
    if _PARAM.search(path):
        # a path naming a run, hook or workflow can name none (404) or a malformed id (400)
        statuses |= {400, 404}
    for status in sorted(statuses):
        if str(status) not in responses:
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": error_schema,
            }
    op["responses"] = responses
    if spec.public:
        op["security"] = []
    elif spec.token_headers:
        op["security"] = [{"bearer": []}, *({h: []} for h in spec.token_headers)]
    return op


def _unique(wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``wanted_2``, ``wanted_3``... (one handler serves several paths)."""
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted}_{n}"
    taken.add(name)
    return name


def _raw_as_json(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    raise NotImplementedError(f"{type(value).__name__} has no JSON Schema default")


def _schema_components(types: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``msgspec.json.schema_components``, able to show a ``msgspec.Raw`` field default.

    The records default their payloads to ``NULL`` (a ``Raw``), which msgspec 0.23's schema
    generator cannot turn into a JSON default; for the call, its ``to_builtins`` decodes a
    ``Raw`` instead (synchronous: nothing else runs meanwhile).
    """
    from msgspec import _json_schema

    original = getattr(_json_schema, "to_builtins")  # noqa: B009  (not exported)

    def to_builtins(obj: Any, **kwargs: Any) -> Any:
        return original(obj, enc_hook=_raw_as_json, **kwargs)

    setattr(_json_schema, "to_builtins", to_builtins)  # noqa: B010
    try:
        return msgspec.json.schema_components(types, ref_template=_REF)
    finally:
        setattr(_json_schema, "to_builtins", original)  # noqa: B010


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's declared routes."""
    routes = _routes(app)
    types = _types([spec for _, _, spec in routes])
    schemas, components = _schema_components(types)
    by_type: dict[Any, Any] = dict(zip(types, schemas, strict=True))
    by_type["__components__"] = components
    paths: dict[str, dict[str, Any]] = {}
    headers: set[str] = set()
    for method, path, spec in routes:
        errors = {s for s in spec.errors_on if s not in spec.responses}
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, spec, by_type, errors)
        headers.update(spec.token_headers)
    security_schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for header in sorted(headers):
        security_schemes[header] = {"type": "apiKey", "in": "header", "name": header}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "worldflow",
            "version": worldflow.__version__,
            "description": "Durable workflows over HTTP: the Dapr workflow API, webhooks, "
            "and the worldflow APIs. Generated from the handlers' types.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": security_schemes},
        "security": [{"bearer": []}],
    }
