"""Inspector UI test setup: an engine on a memory world, the UI app, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.inspector import flows
from worldflow import Engine
from worldflow.inspector import ControlPlane, create_app
from worldflow.worlds import MemoryWorld

TOKEN = "s3cret-token"


def ui_app(engine: Engine, *, token: str | None = None, read_only: bool = False) -> web.Application:
    """The whole HTTP app, as ``worldflow serve`` builds it (the UI is mounted at ``/``)."""
    # Engine.start takes a function or a name; the app's protocol names it by name only
    return create_app(cast("ControlPlane", engine), token=token, read_only=read_only)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    world = MemoryWorld()
    workflows: list[Any] = [
        flows.order,
        flows.waits,
        flows.echo,
        flows.hostile,
        flows.chatty,
        flows.parent,
        flows.napper,
        flows.retrier,
        flows.versioned,
    ]
    async with Engine(world, workflows) as eng:
        yield eng
    await world.aclose()


async def client_for(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the UI with auth off."""
    c = await client_for(ui_app(engine))
    yield c
    await c.close()


@pytest.fixture
async def authed(engine: Engine) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the UI with a token (not logged in)."""
    c = await client_for(ui_app(engine, token=TOKEN))
    yield c
    await c.close()
