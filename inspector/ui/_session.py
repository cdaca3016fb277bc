"""The inspector's browser session: log in with the token once, then a signed cookie.

The cookie (HttpOnly, SameSite=Strict, Path = the app's mount point) holds a random session id,
the time it was issued and an HMAC of both under a key derived from the app's token, so no
session table is needed and changing the token logs every browser out. Each form carries a
CSRF token (an HMAC of the session id); a POST must bring it back *and* come from this origin
(``Origin`` or, failing that, ``Referer``), so another site cannot make a logged-in browser act.

``EventSource`` sends cookies but cannot send headers, which is why live updates use this
cookie too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["COOKIE", "SESSION_TTL", "Session", "Sessions", "cookie_path"]

COOKIE = "worldflow_session"
SESSION_TTL = 12 * 3600
"""Seconds a login lasts."""


@dataclass(frozen=True)
class Session:
    """A valid session: its id and the CSRF token its forms carry."""

    session_id: str
    csrf: str


class Sessions:
    """Issues and checks sessions for one app (see the module docstring).

    Args:
        token: The app's token; ``None`` when auth is off (then every browser gets a session
            on its first page, and the CSRF and origin checks still guard every form).
    """

    def __init__(self, token: str | None) -> None:
        self.token = token
        seed = token.encode() if token is not None else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"worldflow-inspector-session\0" + seed).digest()

    @property
    def auth_required(self) -> bool:
        """Whether a browser must log in with the token."""
        return self.token is not None

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the app's token (compared in constant time)."""
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new(self) -> tuple[Session, str]:
        """A fresh session and the cookie value that carries it (see :meth:`set_cookie`)."""
        session_id = secrets.token_urlsafe(18)
        issued = str(int(time.time()))
        value = f"{session_id}.{issued}.{self._sign(session_id + '.' + issued)}"
        return Session(session_id, self._csrf(session_id)), value

    def set_cookie(self, response: web.StreamResponse, request: web.Request, value: str) -> None:
        """Put the session cookie ``value`` on ``response``."""
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_TTL,
            path=cookie_path(request),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    def _csrf(self, session_id: str) -> str:
        return self._sign("csrf:" + session_id)

    def get(self, request: web.Request) -> Session | None:
        """The request's valid session, or ``None``."""
        value = request.cookies.get(COOKIE, "")
        session_id, _, rest = value.partition(".")
        issued, _, signature = rest.partition(".")
        if not session_id or not issued.isdigit() or not signature:
            return None
        if not hmac.compare_digest(signature, self._sign(session_id + "." + issued)):
            return None
        if time.time() - int(issued) > SESSION_TTL:
            return None
        return Session(session_id, self._csrf(session_id))

    def clear(self, response: web.StreamResponse, request: web.Request) -> None:
        """Log the browser out."""
        response.del_cookie(COOKIE, path=cookie_path(request))

    def check_post(self, request: web.Request, session: Session, form_token: str) -> str | None:
        """Why a form post must be refused (403), or ``None`` when it may proceed."""
        if not hmac.compare_digest(form_token.encode(), session.csrf.encode()):
            return "the form's CSRF token is missing or stale: reload the page and try again"
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            referer = request.headers.get("Referer")
            if referer is None:
                return "the request has no Origin or Referer header"
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        expected = f"{request.scheme}://{request.host}"
        if origin != expected:
            return f"cross-origin form post from {origin} refused (this is {expected})"
        return None


def cookie_path(request: web.Request) -> str:
    """The path the inspector is mounted at (``/`` or the sub-app prefix), for the cookie."""
    return str(request.app.router["ui.home"].url_for())
