"""Webhooks and hooks over HTTP.

* ``/.well-known/workflow/v1/webhook/{token}``, any method (the Vercel Workflow path): the
  request is delivered to the webhook holding ``token`` (``create_webhook()`` in a workflow)
  and the caller gets the webhook's ``respond_with`` response, by default ``202 Accepted``
  with an empty body; for ``respond_with="manual"`` the answer a step sends with
  ``request.respond_with(...)``, or 504 after the app's ``webhook_timeout`` (30 s), or 502 as
  soon as the run ends without answering. Unknown token, or the token of a plain hook → 404.
  ``HEAD`` and ``OPTIONS`` do not resume the run (a CORS preflight or a link checker must not wake a
  workflow) unless the app was created with ``webhook_resume_on_head_options=True``: they
  answer 204 for a live webhook, 404 otherwise. No credentials: the unguessable token is the
  secret.
* ``POST /api/hooks/resume`` with ``{"token": ..., "data": ...}``: what ``resume_hook(token,
  data)`` does, for services that are not Python. 200 ``{"runId": ...}``; unknown token → 404.
  Needs the server's token.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from worldflow import HookNotFoundError, WebhookRequest, WebhookResponse
from worldflow.inspector._body import json_body, read_body
from worldflow.inspector._keys import CONTROL, SETTINGS, principal
from worldflow.inspector._routes import route

__all__ = ["WEBHOOK_PATH", "add_routes"]

WEBHOOK_PATH = "/.well-known/workflow/v1/webhook/{token}"
_NOT_RESUMING = ("HEAD", "OPTIONS")
_ALLOW = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


class ResumeHookBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/hooks/resume``: the hook's token and the payload to send it."""

    token: str
    data: Any = None


class HookResumed(msgspec.Struct, frozen=True, kw_only=True):
    """The run the hook belongs to."""

    runId: str  # wire name, as in the Vercel examples


def _webhook_request(request: web.Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        path=request.path,
        query={key: request.query.getall(key)[-1] for key in request.query},
        headers=dict(request.headers.items()),
        body=body,
    )


def _response(answer: WebhookResponse) -> web.Response:
    return web.Response(status=answer.status, headers=answer.headers, body=answer.body)


@route(public=True, raw_body="*/*", errors_on=(404, 502, 504), tags=("webhooks",))
async def webhook(request: web.Request) -> web.Response:
    """Deliver this HTTP request to the webhook holding ``token``.

    The answer is the webhook's ``respond_with`` response (default ``202``, empty body), or
    for a manual webhook the step's answer (504 when none comes in time, 502 when the run
    ends without one).
    """
    control = request.app[CONTROL]
    token = request.match_info["token"]
    if request.method in _NOT_RESUMING and not request.app[SETTINGS].webhook_resume_on_head_options:
        hook = await control.get_hook_by_token(token)
        if not hook.is_webhook:
            raise HookNotFoundError(f"no webhook has token {token!r}")
        return web.Response(status=204, headers={"Allow": _ALLOW})
    body = await read_body(request)
    timeout = request.app[SETTINGS].webhook_timeout
    answer = await control.resume_webhook(token, _webhook_request(request, body), timeout=timeout)
    return _response(answer)


@route(body=ResumeHookBody, responses={200: HookResumed}, errors_on=(404,), tags=("hooks",))
async def resume_hook(request: web.Request) -> web.Response:
    """Send ``data`` to the hook holding ``token`` (``resume_hook`` over HTTP).

    The workflow waiting on the hook continues with ``data``. Unknown token → 404.
    """
    body = await json_body(request, ResumeHookBody)
    hook = await request.app[CONTROL].resume_hook(body.token, body.data, actor=principal(request))
    return web.Response(
        body=msgspec.json.encode(HookResumed(runId=hook.run_id)), content_type="application/json"
    )


def add_routes(app: web.Application) -> None:
    """Add the webhook route and ``POST /api/hooks/resume``."""
    app.router.add_route("*", WEBHOOK_PATH, webhook)
    app.router.add_post("/api/hooks/resume", resume_hook)
