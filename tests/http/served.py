"""A real server for the HTTP tests: the app on a loopback socket, and a client session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from worldflow.inspector import ControlPlane, create_app


class Served:
    """A running app: its base URL and a session that talks to it."""

    def __init__(self, url: str, session: aiohttp.ClientSession, app: web.Application) -> None:
        self.url = url
        self.session = session
        self.app = app

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """``session.request`` against the server (an async context manager)."""
        return self.session.request(method, self.url + path, **kw)


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[Served]:
    """Serve ``app`` on 127.0.0.1 (a free port) until the block ends."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(f"http://127.0.0.1:{port}", session, app)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving(control: ControlPlane, **options: Any) -> AsyncIterator[Served]:
    """``create_app(control, **options)`` served on a loopback socket."""
    async with serve_app(create_app(control, **options)) as served:
        yield served
