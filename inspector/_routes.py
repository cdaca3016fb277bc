"""How a route says who may call it, how its errors look, and what it takes and returns.

Each handler is wrapped by :func:`route`, which attaches a :class:`RouteSpec`. The auth
middleware reads ``public`` and ``token_headers``, the error middleware reads ``errors``, and
``/openapi.json`` is generated from ``body``, ``query`` and ``responses`` (msgspec types: the
same ones the handler decodes and encodes)::

    @route(body=StartBody, responses={202: StartAccepted}, errors=DAPR_ERRORS, tags=("dapr",))
    async def start(request: web.Request) -> web.Response: ...

A handler without a spec is a private, default-shaped route that the OpenAPI document omits;
so is one whose spec declares none of ``body``, ``raw_body``, ``query`` and ``responses`` (an
HTML page declaring only ``public=True``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web

__all__ = [
    "DEFAULT_ERRORS",
    "DefaultError",
    "ErrorShape",
    "Problem",
    "RouteSpec",
    "route",
    "spec_of",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An error on its way to the caller, before an API gives it its own shape.

    Attributes:
        status: The HTTP status.
        code: A stable code (``run_not_found``, ``invalid_request``, the ``worldflow.errors``
            class's ``code``).
        message: What went wrong, for a person.
        field: The request field at fault (``body.data``, ``query.instanceID``), for a 400.
        error_id: For a 500: the id under which the server logged the traceback.
        details: The error's attributes besides its message (``owner_id``, ``run_id``), so
            the remote world rebuilds it whole.
    """

    status: int
    code: str
    message: str
    field: str | None = None
    error_id: str | None = None
    details: dict[str, str | int | float | bool | None] | None = None


class DefaultError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The error body of routes that do not choose their own: ``{"code", "message", ...}``."""

    code: str
    message: str
    field: str | None = None
    errorId: str | None = None  # wire name
    details: dict[str, str | int | float | bool | None] | None = None
    """The error's attributes besides its message (``worldflow.errors.error_details``)."""


@dataclass(frozen=True)
class ErrorShape:
    """How one API's errors look on the wire.

    Attributes:
        schema: The msgspec type of the error body (for ``/openapi.json``).
        render: Turns a :class:`Problem` into a value of ``schema``.
    """

    schema: type[Any]
    render: Callable[[Problem], Any]


DEFAULT_ERRORS = ErrorShape(
    DefaultError,
    lambda p: DefaultError(
        code=p.code, message=p.message, field=p.field, errorId=p.error_id, details=p.details
    ),
)


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    """What a route declares about itself (see the module docstring).

    Attributes:
        public: No credentials needed (webhooks, ``/healthz``).
        token_headers: Headers besides ``Authorization: Bearer`` that may carry the token
            (``dapr-api-token`` on the Dapr routes).
        errors: The shape of its error bodies.
        body: The msgspec type of a JSON request body, if it takes one.
        raw_body: The content type of a body passed through as bytes (``*/*``), if any.
        query: A msgspec Struct whose fields are the query parameters.
        responses: Status → msgspec type of the JSON body (``None``: no JSON body).
        errors_on: The error statuses it answers besides the automatic ones (401/403 unless
            public, 400/413 with a body, 400 with a query, 400/404 with path parameters):
            ``(409,)``.
        tags: OpenAPI tags (one per API family).
        summary: One line for the OpenAPI document; default: the handler's first docstring
            line.
    """

    public: bool = False
    token_headers: tuple[str, ...] = ()
    errors: ErrorShape = DEFAULT_ERRORS
    body: type[Any] | None = None
    raw_body: str | None = None
    query: type[Any] | None = None
    responses: Mapping[int, type[Any] | None] = field(default_factory=dict)
    errors_on: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    summary: str | None = None
    handler_name: str = ""
    description: str | None = None


_ATTR = "__worldflow_route__"


def route(
    *,
    public: bool = False,
    token_headers: tuple[str, ...] = (),
    errors: ErrorShape = DEFAULT_ERRORS,
    body: type[Any] | None = None,
    raw_body: str | None = None,
    query: type[Any] | None = None,
    responses: Mapping[int, type[Any] | None] | None = None,
    errors_on: tuple[int, ...] = (),
    tags: tuple[str, ...] = (),
    summary: str | None = None,
) -> Callable[[H], H]:
    """Attach a :class:`RouteSpec` to a handler (see the module docstring)."""

    def attach(handler: H) -> H:
        doc = (handler.__doc__ or "").strip()
        first, _, rest = doc.partition("\n\n")
        spec = RouteSpec(
            public=public,
            token_headers=tuple(h.lower() for h in token_headers),
            errors=errors,
            body=body,
            raw_body=raw_body,
            query=query,
            responses=dict(responses or {}),
            errors_on=errors_on,
            tags=tags,
            summary=summary or " ".join(first.split()) or None,
            handler_name=getattr(handler, "__name__", "handler"),
            description=" ".join(rest.split()) or None,
        )
        setattr(handler, _ATTR, spec)
        return handler

    return attach


def spec_of(handler: object) -> RouteSpec | None:
    """The spec a handler was declared with, or ``None``."""
    spec = getattr(handler, _ATTR, None)
    return spec if isinstance(spec, RouteSpec) else None
