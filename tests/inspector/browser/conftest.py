"""Browser tests: the inspector served on a real loopback port, driven in Debian's headless
Chromium by Playwright (``executable_path``; no browser is ever downloaded).

``.ci/run`` installs ``chromium``; without it these tests fail and say how to get it
(``WORLDFLOW_SKIP_BROWSER=1`` skips them on a machine that cannot have it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from tests.inspector import flows
from tests.inspector.conftest import ui_app
from worldflow import Engine
from worldflow.worlds import MemoryWorld

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass
class Served:
    """The inspector on a port, the engine behind it, and what the browser saw."""

    engine: Engine
    base: str
    app: web.Application
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if os.environ.get("WORLDFLOW_SKIP_BROWSER") == "1":
        pytest.skip("WORLDFLOW_SKIP_BROWSER=1")
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    world = MemoryWorld()
    workflows: list[Any] = [
        flows.order,
        flows.waits,
        flows.echo,
        flows.hostile,
        flows.napper,
        flows.retrier,
    ]
    async with Engine(world, workflows) as eng:
        yield eng
    await world.aclose()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def served(engine: Engine) -> AsyncIterator[Served]:
    app = ui_app(engine)
    runner, base = await serve(app)
    yield Served(engine=engine, base=base, app=app)
    await runner.cleanup()


@pytest.fixture
async def page(browser: Browser, served: Served) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    p = await context.new_page()
    p.on("console", lambda m: served.errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: served.errors.append(str(e)))
    p.on("dialog", lambda d: served.errors.append(f"dialog: {d.message}"))
    p.on(
        "response",
        lambda r: served.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    p.set_default_timeout(10_000)
    yield p
    await context.close()
