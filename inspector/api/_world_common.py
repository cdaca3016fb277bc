"""What the World API's handlers share (:mod:`worldflow.inspector.api.world` and
:mod:`worldflow.inspector.api.world_engines`): the hosted world of a request, its per-app
state (idempotency store, server epoch, shutdown signal), query parsing, idempotent writes and
long-poll bounds."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from worldflow.errors import InvalidEventError, WorldflowError
from worldflow.inspector._body import read_body
from worldflow.inspector._idempotency import Answer, IdempotencyStore
from worldflow.inspector._keys import CONTROL
from worldflow.worlds import World
from worldflow.worlds._wire import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_TTL,
    LONG_POLL_MAX,
    convert_query,
    encode,
)

__all__ = [
    "JSON",
    "STATE",
    "TAGS",
    "Handler",
    "State",
    "cap_wait",
    "idempotent",
    "json_response",
    "no_content",
    "parse_query",
    "respond",
    "until_closing",
    "world_of",
]

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class State:
    idempotency: IdempotencyStore = field(
        default_factory=lambda: IdempotencyStore(ttl=IDEMPOTENCY_TTL)
    )
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    closing: asyncio.Event = field(default_factory=asyncio.Event)


STATE: web.AppKey[State] = web.AppKey("worldflow.world_api.state", State)

JSON = "application/json"
TAGS = ("world",)


def world_of(request: web.Request) -> World:
    return request.app[CONTROL].world


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(body=encode(value), status=status, content_type=JSON)


def no_content() -> web.Response:
    return web.Response(status=204)


def parse_query(request: web.Request, type_: type[T], *, lists: tuple[str, ...] = ()) -> T:
    query = request.query
    values: dict[str, Any] = {k: query.getall(k) if k in lists else query[k] for k in query}
    return convert_query(values, type_)


async def idempotent(
    request: web.Request, compute: Callable[[bytes], Coroutine[Any, Any, Answer]]
) -> Answer:
    """Run a write once per ``Idempotency-Key`` (without a key: every time)."""
    body = await read_body(request)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return await compute(body)
    if not key or len(key) > 200:
        raise InvalidEventError(f"header `{IDEMPOTENCY_HEADER}` must be 1 to 200 characters")
    fingerprint = (request.method, request.path, hash(body))
    return await request.app[STATE].idempotency.answer(key, fingerprint, lambda: compute(body))


def respond(answer: Answer) -> web.Response:
    status, body = answer
    if status == 204:
        return no_content()
    return web.Response(body=body, status=status, content_type=JSON)


async def until_closing(request: web.Request, wait: Coroutine[Any, Any, T], fallback: T) -> T:
    """``wait``'s value, or ``fallback`` if the app starts shutting down first."""
    closing = request.app[STATE].closing
    if closing.is_set():
        wait.close()
        return fallback
    task = asyncio.ensure_future(wait)
    stop = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, WorldflowError):
        await task
    return fallback


def cap_wait(seconds: float) -> float:
    return min(max(0.0, seconds), LONG_POLL_MAX)
