"""worldflow's own run routes, for what the Dapr API has no verb for.

* ``POST /api/runs/{runId}/rerun``: start a new run with an old run's input, resource id and
  metadata (``worldflow rerun --server``). 200 ``{"runId": <the new run>}``; unknown run → 404.
* ``POST /api/runs/{runId}/fork`` with ``{"fromStep": ..., "input": {...}, "runId": ...}``
  (all optional): ``Client.fork`` (``worldflow fork --server``). 200 ``{"runId"}``; unknown run
  or step → 404, a taken run id or an ambiguous step name → 409, an input that does not fit
  the step → 400.
* ``POST /api/runs/{runId}/steps/{step}/resume`` with ``{"data": ...}``: resume a step that
  called ``suspend()`` (by step id or name). 200 ``{"runId"}``; unknown run or step → 404, a
  step that is not suspended → 409.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from worldflow.inspector._body import decode_json, read_body
from worldflow.inspector._keys import CONTROL, principal
from worldflow.inspector._routes import route

__all__ = ["add_routes"]


class RunRef(msgspec.Struct, frozen=True, kw_only=True):
    """A run's id."""

    runId: str  # wire name


class ForkBody(msgspec.Struct, frozen=True, kw_only=True):
    """Where to fork from and with what (every field optional)."""

    fromStep: str | None = None  # wire name: a step id, or a name one call has
    input: dict[str, Any] | None = None  # the step's (or workflow's) new arguments
    runId: str | None = None  # wire name: the fork's run id


class ResumeStepBody(msgspec.Struct, frozen=True, kw_only=True):
    """What ``get_resume_data()`` returns in the resumed step."""

    data: Any = None


def _ref(run_id: str) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(RunRef(runId=run_id)), content_type="application/json"
    )


@route(responses={200: RunRef}, errors_on=(404,), tags=("runs",))
async def rerun(request: web.Request) -> web.Response:
    """Start a new run with an old run's input (its ``forked_from`` is the old run)."""
    new = await request.app[CONTROL].rerun(request.match_info["runId"], actor=principal(request))
    return _ref(new.run_id)


@route(body=ForkBody, responses={200: RunRef}, errors_on=(400, 404, 409), tags=("runs",))
async def fork(request: web.Request) -> web.Response:
    """Fork a run from a step (or from the start) with a new input for it."""
    raw = await read_body(request)
    body = decode_json(raw, ForkBody) if raw.strip() else ForkBody()
    new = await request.app[CONTROL].fork(
        request.match_info["runId"],
        from_step=body.fromStep,
        input=body.input,
        run_id=body.runId,
        actor=principal(request),
    )
    return _ref(new.run_id)


@route(body=ResumeStepBody, responses={200: RunRef}, errors_on=(404, 409), tags=("runs",))
async def resume_step(request: web.Request) -> web.Response:
    """Resume a step waiting in ``suspend()``; ``data`` is its ``get_resume_data()``."""
    run_id = request.match_info["runId"]
    raw = await read_body(request)
    data = None
    if raw.strip():
        data = decode_json(raw, ResumeStepBody).data
    await request.app[CONTROL].resume_step(
        run_id, request.match_info["step"], data, actor=principal(request)
    )
    return _ref(run_id)


def add_routes(app: web.Application) -> None:
    """Add the rerun, fork and resume-step routes."""
    app.router.add_post("/api/runs/{runId}/rerun", rerun)
    app.router.add_post("/api/runs/{runId}/fork", fork)
    app.router.add_post("/api/runs/{runId}/steps/{step}/resume", resume_step)
