"""A live World API server for tests: ``create_app`` on a real socket on 127.0.0.1, hosting
any world."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from aiohttp import web

from worldflow.inspector import ControlPlane, create_app
from worldflow.worlds import World


class Hosting:
    """The control plane of a server that only serves a world (the World API reads nothing
    else; the other route families are not mounted)."""

    def __init__(self, world: World) -> None:
        self.world = world


def world_app(world: World, *, token: str | None = None) -> web.Application:
    """The app serving ``world``'s World API (and ``/healthz``, ``/openapi.json``)."""
    control = cast(ControlPlane, Hosting(world))
    return create_app(control, token=token, families=("worldflow.inspector.api.world",))


@asynccontextmanager
async def served(world: World, *, port: int = 0, token: str | None = None) -> AsyncIterator[str]:
    """Serve ``world`` on 127.0.0.1 (a free port unless given); yield the server's URL."""
    runner = web.AppRunner(world_app(world, token=token), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
