"""The inspector's web UI: runs, one run (waiting on, timeline, events, payloads), hooks,
workflows; live by server-sent events; actions as form posts.

:func:`add_routes` mounts it at the root of the app that
:func:`worldflow.inspector.create_app` builds (or of any aiohttp app that holds the control
plane under ``CONTROL``); mounted as a sub-app, every link, form, asset and live URL stays
under its prefix.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from aiohttp import web

from worldflow.inspector._routes import route
from worldflow.inspector.ui import _actions, _live, _pages
from worldflow.inspector.ui._state import (
    LIVE_TASKS,
    UI_OPTIONS,
    UI_STATE,
    UiOptions,
    make_state,
    security_headers,
)

__all__ = ["UI_OPTIONS", "UiOptions", "add_routes"]

_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@route(public=True)
async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["path"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _STATIC_TYPES:
        raise web.HTTPNotFound()
    resource = resources.files("worldflow.inspector.ui").joinpath("static", name)
    if not resource.is_file():
        raise web.HTTPNotFound()
    response = web.Response(body=resource.read_bytes(), content_type=_STATIC_TYPES[suffix])
    response.headers["Cache-Control"] = "no-cache"
    security_headers(response)
    return response


@route(public=True)
async def _home_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(str(request.app.router["ui.home"].url_for()))


async def _close_live(app: web.Application) -> None:
    tasks: list[asyncio.Task[Any]] = [*app[LIVE_TASKS]]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


def add_routes(app: web.Application) -> None:
    """Add the UI's routes to ``app`` (which holds the control plane under ``CONTROL``).

    Options come from ``app[UI_OPTIONS]`` (read-only mode, title) when set before this call.
    """
    app[UI_STATE] = make_state(app)
    app[LIVE_TASKS] = set()
    app.on_shutdown.append(_close_live)
    r = app.router
    r.add_get("/", _pages.runs_page, name="ui.home")
    r.add_get("/runs", _home_redirect, name="ui.runs")
    r.add_get("/runs/{run_id}", _pages.run_page, name="ui.run")
    r.add_get("/runs/{run_id}/live", _live.run_live, name="ui.run.live")
    r.add_get("/runs/{run_id}/events.jsonl", _live.export_events, name="ui.events_export")
    r.add_get("/runs/{run_id}/payload/{what}", _pages.payload, name="ui.payload")
    r.add_get("/runs/{run_id}/streams/{stream}", _live.stream_page, name="ui.stream")
    r.add_get("/runs/{run_id}/streams/{stream}/live", _live.stream_live, name="ui.stream.live")
    r.add_post("/runs/{run_id}/cancel", _actions.cancel, name="ui.act.cancel")
    r.add_post("/runs/{run_id}/suspend", _actions.suspend, name="ui.act.suspend")
    r.add_post("/runs/{run_id}/resume", _actions.resume, name="ui.act.resume")
    r.add_post("/runs/{run_id}/raise-event", _actions.raise_event, name="ui.act.raise_event")
    r.add_post("/runs/{run_id}/rerun", _actions.rerun, name="ui.act.rerun")
    r.add_post("/runs/{run_id}/fork", _actions.fork, name="ui.act.fork")
    r.add_post("/runs/{run_id}/purge", _actions.purge, name="ui.act.purge")
    r.add_post("/runs/{run_id}/resume-step", _actions.resume_step, name="ui.act.resume_step")
    r.add_post("/runs/{run_id}/fail", _actions.fail, name="ui.act.fail")
    r.add_post("/runs/{run_id}/wake", _actions.wake, name="ui.act.wake")
    r.add_post("/runs/{run_id}/retry-now", _actions.retry_now, name="ui.act.retry_now")
    r.add_post("/runs/{run_id}/unstall", _actions.unstall, name="ui.act.unstall")
    r.add_post("/hooks/resolve", _actions.resolve_hook, name="ui.act.resolve")
    r.add_post("/workflows/start", _actions.start, name="ui.act.start")
    r.add_get("/live/runs", _live.runs_live, name="ui.runs.live")
    r.add_get("/hooks", _pages.hooks_page, name="ui.hooks")
    r.add_get("/workflows", _pages.workflows_page, name="ui.workflows")
    r.add_get("/login", _pages.login_form, name="ui.login")
    r.add_post("/login", _pages.login, name="ui.login.post")
    r.add_post("/logout", _pages.logout, name="ui.logout")
    r.add_get("/static/{path}", _static, name="ui.static")
