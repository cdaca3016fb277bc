"""Who may see a page and who may act: the session check every UI handler goes through.

A page without a valid session redirects to the login form (when the app has a token); a live
stream or a form post without one gets 401. A form post also needs its CSRF token and this
origin (403 otherwise), and is refused in read-only mode (403). ``Authorization: Bearer`` with
the app's token works too (a script, not a browser: no cookie, so no CSRF to fear).

Errors from the world become HTML error pages with the right status (404 unknown run or hook,
400 a bad query or form field, 409 a conflict), never a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    NotFoundError,
    RunTerminalError,
    SerializationError,
    WorkflowNotRegisteredError,
)
from worldflow.inspector._routes import route
from worldflow.inspector.ui._filters import FilterError
from worldflow.inspector.ui._session import Session
from worldflow.inspector.ui._state import render, ui_state, url_for

__all__ = ["UiError", "action", "page", "stream"]

Page = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BEARER = Session("bearer", "")


class UiError(Exception):
    """An error to show on the page with its HTTP status (a bad form field: 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bearer(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and ui_state(request).sessions.check_token(given.strip())


def _status_of(exc: Exception) -> tuple[int, str]:
    match exc:
        case UiError(status=status, message=message):
            return status, message
        case NotFoundError():
            return 404, str(exc)
        case RunTerminalError() | EntityConflictError():
            return 409, str(exc)
        case FilterError() | InvalidEventError() | SerializationError() | ValueError():
            return 400, str(exc)
        case WorkflowNotRegisteredError():
            return 409, str(exc)
    raise exc


def _error_page(request: web.Request, session: Session | None, exc: Exception) -> web.Response:
    status, message = _status_of(exc)
    return render(
        request, "error.html", status=status, session=session, message=message, code=status
    )


def page(handler: Page) -> Handler:
    """A GET page: redirect to login without a session; errors as HTML pages."""

    @route(public=True)
    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        sessions = ui_state(request).sessions
        session = sessions.get(request)
        cookie: str | None = None
        if session is None:
            if _bearer(request):
                session = _BEARER
            elif sessions.auth_required:
                login = url_for(request, "ui.login", {"next": request.path_qs})
                raise web.HTTPSeeOther(login)
            else:
                session, cookie = sessions.new()
        try:
            response = await handler(request, session)
        except web.HTTPException:
            raise
        except Exception as exc:
            response = _error_page(request, session, exc)
        if cookie is not None:
            sessions.set_cookie(response, request, cookie)
        return response

    return wrapped


def stream(handler: Page) -> Handler:
    """A live stream or download: 401 without a session (no redirect for a script)."""

    @route(public=True)
    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = ui_state(request).sessions.get(request)
        if session is None:
            if _bearer(request) or not ui_state(request).sessions.auth_required:
                session = _BEARER
            else:
                raise web.HTTPUnauthorized(text="log in to the inspector first")
        try:
            return await handler(request, session)
        except web.HTTPException:
            raise
        except Exception as exc:
            status, message = _status_of(exc)
            raise _http(status, message) from None

    return wrapped


def _http(status: int, message: str) -> web.HTTPException:
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }
    return classes.get(status, web.HTTPBadRequest)(text=message)


def action(handler: Page) -> Handler:
    """A form post: session (401), CSRF token and origin (403), not read-only (403).

    The handler returns a redirect (post/redirect/get); an error re-renders as an error page
    with its status.
    """

    @route(public=True)
    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = ui_state(request)
        session = state.sessions.get(request)
        if session is None:
            if _bearer(request):
                session = _BEARER
            elif state.sessions.auth_required:
                raise web.HTTPUnauthorized(text="log in to the inspector first")
        if state.options.read_only:
            return render(
                request,
                "error.html",
                status=403,
                session=session,
                code=403,
                message="This inspector is read-only: no action is allowed.",
            )
        if session is not _BEARER:
            form = await request.post()
            token = form.get("csrf")
            if session is None:
                return render(
                    request,
                    "error.html",
                    status=403,
                    session=None,
                    code=403,
                    message="no session: open the page again before posting a form",
                )
            refused = state.sessions.check_post(
                request, session, token if isinstance(token, str) else ""
            )
            if refused is not None:
                return render(
                    request, "error.html", status=403, session=session, code=403, message=refused
                )
        assert session is not None
        try:
            return await handler(request, session)
        except web.HTTPException:
            raise
        except Exception as exc:
            return _error_page(request, session, exc)

    return wrapped
