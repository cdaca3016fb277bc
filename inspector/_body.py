"""Reading requests: the size limit, JSON bodies and query strings decoded into msgspec types.

Every failure is a :class:`RequestError` naming the field at fault (``body.token``,
``query.limit``), which the error middleware answers with 400 (or 413 for a body over the
limit) in the route's own error shape.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from worldflow.inspector._keys import SETTINGS

__all__ = ["RequestError", "json_body", "query_params", "read_body"]

T = TypeVar("T")


class RequestError(Exception):
    """A request the app refuses: a status (400, 413, 401, 403, ...) and what is wrong.

    Args:
        status: The HTTP status to answer.
        message: What is wrong, for a person.
        code: A stable code (default ``invalid_request``).
        field: The request field at fault (``body.data``, ``path.instanceId``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "invalid_request",
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field


def too_large(limit: int) -> RequestError:
    """The error for a body over ``limit`` bytes."""
    return RequestError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        code="body_too_large",
        field="body",
    )


async def read_body(request: web.Request) -> bytes:
    """The raw body, refused with 413 past the app's ``max_body_size``.

    Reads the stream itself, so the limit holds even when the app is mounted inside another
    application with a different ``client_max_size``.
    """
    limit = request.app[SETTINGS].max_body_size
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")


def _field(prefix: str, error: msgspec.MsgspecError) -> tuple[str, str]:
    """``(field, message)`` from a msgspec error: ``body.items[0].qty``."""
    message = str(error)
    path = ""
    at = _AT.search(message)
    if at:
        path = at.group("path")
        message = message[: at.start()]
    missing = _MISSING.match(message)
    if missing:
        path = f"{path}.{missing.group('name')}"
    dotted = prefix + path if path.startswith(("[", ".")) or not path else f"{prefix}.{path}"
    return dotted, message


def decode_json(data: bytes, type_: type[T], *, prefix: str = "body") -> T:
    """Decode JSON ``data`` into ``type_``; a :class:`RequestError` (400) names the field."""
    if not data.strip():
        raise RequestError(400, "the request body must be JSON, and it is empty", field=prefix)
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        name, message = _field(prefix, exc)
        raise RequestError(400, f"{name}: {message}", field=name) from None
    except msgspec.DecodeError as exc:
        message = f"the request body is not valid JSON: {exc}"
        raise RequestError(400, message, field=prefix) from None


async def json_body(request: web.Request, type_: type[T]) -> T:
    """The request's JSON body decoded into ``type_`` (400 naming the field, 413 too big)."""
    return decode_json(await read_body(request), type_)


def query_params(request: web.Request, type_: type[T]) -> T:
    """The query string converted into the Struct ``type_`` (strings coerced to its field
    types: ``?limit=5`` → ``5``); 400 names the parameter."""
    values: dict[str, Any] = {}
    for key in request.query:
        values[key] = request.query.getone(key)
    try:
        return msgspec.convert(values, type_, strict=False)
    except msgspec.ValidationError as exc:
        name, message = _field("query", exc)
        raise RequestError(400, f"{name}: {message}", field=name) from None
