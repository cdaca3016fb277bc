"""A live World API server for tests: a real socket on 127.0.0.1, hosting any world."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from worldflow.errors import WorldflowError
from worldflow.inspector.api import world as world_api
from worldflow.worlds import World
from worldflow.worlds._wire import ErrorBody, encode


@web.middleware
async def _errors(request: web.Request, handler: world_api.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WorldflowError as exc:
        body = encode(ErrorBody(code=exc.code, message=exc.message))
        return web.Response(body=body, status=exc.http_status, content_type="application/json")


def world_app(world: World) -> web.Application:
    """An app serving ``world``'s World API."""
    app = web.Application(middlewares=[_errors])
    app[world_api.WORLD] = world
    world_api.add_routes(app)
    return app


@asynccontextmanager
async def served(world: World, *, port: int = 0) -> AsyncIterator[str]:
    """Serve ``world`` on 127.0.0.1 (a free port unless given); yield the server's URL."""
    runner = web.AppRunner(world_app(world), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sockets = runner.addresses
    host, bound = sockets[0][:2]
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
