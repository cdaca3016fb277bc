"""worldflow's own run routes, for what the Dapr API has no verb for.

* ``POST /api/runs/{runId}/rerun``: start a new run with an old run's input, resource id and
  metadata (``worldflow rerun --server``). 200 ``{"runId": <the new run>}``; unknown run → 404.
* ``POST /api/runs/{runId}/steps/{step}/resume`` with ``{"data": ...}``: resume a step that
  called ``suspend()`` (by step id or name). 200 ``{"runId"}``; unknown run or step → 404, a
  step that is not suspended → 409.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from worldflow.inspector._body import decode_json, read_body
from worldflow.inspector._keys import CONTROL
from worldflow.inspector._routes import route

__all__ = ["add_routes"]


class RunRef(msgspec.Struct, frozen=True, kw_only=True):
    """A run's id."""

    runId: str  # wire name


class ResumeStepBody(msgspec.Struct, frozen=True, kw_only=True):
    """What ``get_resume_data()`` returns in the resumed step."""

    data: Any = None


def _ref(run_id: str) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(RunRef(runId=run_id)), content_type="application/json"
    )


@route(responses={200: RunRef}, errors_on=(404,), tags=("runs",))
async def rerun(request: web.Request) -> web.Response:
    """Start a new run with an old run's input (its metadata gets ``rerun_of``)."""
    new = await request.app[CONTROL].rerun(request.match_info["runId"])
    return _ref(new.run_id)


@route(body=ResumeStepBody, responses={200: RunRef}, errors_on=(404, 409), tags=("runs",))
async def resume_step(request: web.Request) -> web.Response:
    """Resume a step waiting in ``suspend()``; ``data`` is its ``get_resume_data()``."""
    run_id = request.match_info["runId"]
    raw = await read_body(request)
    data = None
    if raw.strip():
        data = decode_json(raw, ResumeStepBody).data
    await request.app[CONTROL].resume_step(run_id, request.match_info["step"], data)
    return _ref(run_id)


def add_routes(app: web.Application) -> None:
    """Add the rerun and resume-step routes."""
    app.router.add_post("/api/runs/{runId}/rerun", rerun)
    app.router.add_post("/api/runs/{runId}/steps/{step}/resume", resume_step)
