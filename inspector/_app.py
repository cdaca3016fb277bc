"""``create_app``: the one aiohttp application behind ``worldflow serve`` (DESIGN.md §7).

The app holds the control plane and its settings under typed keys (``_keys``), runs every
request through the error and auth middlewares (``_middleware``), and gets its routes from
the route families listed in :data:`FAMILIES`, each a module with
``add_routes(app: web.Application) -> None``.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgspec
from aiohttp import web

from worldflow import Engine
from worldflow._webhooks import set_base_url
from worldflow.errors import WorldflowError
from worldflow.inspector._body import RequestError
from worldflow.inspector._keys import (
    AUTH_CHECKS,
    CONTROL,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_WEBHOOK_TIMEOUT,
    SETTINGS,
    ControlPlane,
    Settings,
)
from worldflow.inspector._middleware import auth_middleware, error_middleware, id_middleware
from worldflow.inspector._openapi import openapi_document
from worldflow.inspector._routes import route
from worldflow.inspector.ui._state import UI_OPTIONS, UiOptions

__all__ = ["FAMILIES", "create_app"]

FAMILIES: tuple[str, ...] = (
    "worldflow.inspector.api.dapr",
    "worldflow.inspector.api.webhooks",
    "worldflow.inspector.api.runs",
    "worldflow.inspector.api.mastra",
    "worldflow.inspector.api.world",
    "worldflow.inspector.ui",
)
"""The route families, as module names; each module has ``add_routes(app)``. A new API
family is one module and one line here."""


class Health(msgspec.Struct, frozen=True):
    """``/healthz``: the server is up and its world is open."""

    status: str = "ok"


@route(public=True, responses={200: Health}, tags=("server",))
async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 once the app's engine or client is ready.

    A ``503`` means the engine is not entered yet (or is shutting down).
    """
    control = request.app[CONTROL]
    try:
        if isinstance(control, Engine):
            control.driver  # noqa: B018  (raises unless the engine is entered and running)
        await control.world.wait_for_world(after=0, timeout=0)
    except (RuntimeError, WorldflowError) as exc:
        return web.json_response({"status": "starting", "message": str(exc)}, status=503)
    return web.Response(body=msgspec.json.encode(Health()), content_type="application/json")


@route(responses={200: dict[str, Any]}, tags=("server",))
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of every JSON route, generated from the handlers' types."""
    document = openapi_document(request.app)
    return web.Response(body=msgspec.json.encode(document), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """The engine's counters in the Prometheus text format (runs and step attempts).

    404 when the engine or client runs without telemetry (``telemetry=True`` turns it on).
    Not a JSON route, so not in ``/openapi.json``; it needs the token like every route.
    """
    telemetry = getattr(request.app[CONTROL], "telemetry", None)
    if telemetry is None:
        raise RequestError(
            404, "this server runs without telemetry: start it with telemetry on", field=None
        )
    return web.Response(
        text=telemetry.metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def create_app(
    control: ControlPlane,
    *,
    token: str | None = None,
    base_url: str | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
    webhook_resume_on_head_options: bool = False,
    families: tuple[str, ...] = FAMILIES,
    read_only: bool = False,
) -> web.Application:
    """The worldflow HTTP application for an Engine or a Client.

    Serve it with ``web.run_app(app)`` (or ``worldflow serve``), or mount it inside your own
    aiohttp app with ``parent.add_subapp("/workflows/", app)``. The caller owns ``control``:
    enter the Engine (``async with``) before serving and close it after.

    Args:
        control: The :class:`~worldflow.Engine` (or ``worldflow.Client``) requests act
            through.
        token: The bearer token required on every route but webhooks and ``/healthz``;
            ``None`` turns auth off (only sensible on a loopback address).
        base_url: Where the app is reachable from outside (including a mount prefix), used
            to build ``webhook.url`` (process-wide: the last app created with one wins).
        max_body_size: Request bodies over this many bytes are refused with 413.
        webhook_timeout: Seconds (at most 30 by default) a ``respond_with="manual"`` webhook
            call waits for the run to answer before replying 504.
        webhook_resume_on_head_options: Let HEAD and OPTIONS requests resume webhooks too.
        families: The route families to serve (module names; default: all of them).
        read_only: The inspector UI shows everything and allows no action (its buttons are
            disabled, saying so, and its form posts are refused with 403).

    Example::

        async with Engine(world, workflows=[checkout]) as engine:
            app = create_app(engine, token=os.environ["WORLDFLOW_TOKEN"])
            runner = web.AppRunner(app)
            ...
    """
    if max_body_size < 1:
        raise ValueError("max_body_size must be at least 1 byte")
    if webhook_timeout <= 0:
        raise ValueError("webhook_timeout must be positive")
    if token is not None and not token:
        raise ValueError("token must be a non-empty string (or None to turn auth off)")
    app = web.Application(
        middlewares=[error_middleware, auth_middleware, id_middleware],
        client_max_size=max_body_size,
    )
    app[CONTROL] = control
    app[SETTINGS] = Settings(
        token=token,
        base_url=base_url.rstrip("/") if base_url else None,
        max_body_size=max_body_size,
        webhook_timeout=webhook_timeout,
        webhook_resume_on_head_options=webhook_resume_on_head_options,
    )
    app[AUTH_CHECKS] = []
    app[UI_OPTIONS] = UiOptions(read_only=read_only)
    if base_url:
        set_base_url(base_url)  # webhook.url, for workflows run by this process
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    for name in families:
        importlib.import_module(name).add_routes(app)
    return app
