"""What the UI keeps on the app: its templates, sessions, options and a small counts cache.

Everything hangs off typed app keys (no module globals), so two inspectors can live in one
process. Pages render through :func:`render`, which adds the security headers every HTML
response carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from worldflow.inspector._keys import CONTROL, SETTINGS, ControlPlane
from worldflow.inspector.ui._layout import format_ms
from worldflow.inspector.ui._payloads import format_size, show_payload, summary
from worldflow.inspector.ui._session import Session, Sessions
from worldflow.worlds import RunStatus, World

__all__ = [
    "CSP",
    "DONE",
    "LIVE_TASKS",
    "UI_OPTIONS",
    "UI_STATE",
    "UiOptions",
    "UiState",
    "base_context",
    "control",
    "render",
    "security_headers",
    "ui_state",
]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
"""No inline script or style anywhere: an escaping bug cannot run code."""


@dataclass(frozen=True, kw_only=True)
class UiOptions:
    """How the UI behaves; put on the app under :data:`UI_OPTIONS` before ``add_routes``.

    Attributes:
        read_only: Show everything, allow no action (buttons disabled, posts refused 403).
        title: The name in the page header.
    """

    read_only: bool = False
    title: str = "worldflow"


UI_OPTIONS: web.AppKey[UiOptions] = web.AppKey("worldflow.ui.options", UiOptions)
"""The UI's options (default: :class:`UiOptions`)."""


class Catalog(Protocol):
    """A control plane that can list its workflows (a Client reads them from the world)."""

    def list_workflows(self) -> Collection[Any] | Awaitable[Collection[Any]]:
        """The published workflows."""
        ...


@dataclass
class UiState:
    """The UI's per-app state (templates, sessions, the runs-count cache)."""

    env: jinja2.Environment
    sessions: Sessions
    options: UiOptions
    counts: dict[tuple[object, ...], tuple[int, dict[str, int], int, bool]] = field(
        default_factory=dict
    )
    refreshing: set[tuple[object, ...]] = field(default_factory=set)


UI_STATE: web.AppKey[UiState] = web.AppKey("worldflow.ui.state", UiState)


def ui_state(request: web.Request) -> UiState:
    """The UI state of the app serving ``request``."""
    return request.app[UI_STATE]


def control(request: web.Request) -> ControlPlane:
    """The Engine or Client the UI reads and acts through."""
    return request.app[CONTROL]


def world(request: web.Request) -> World:
    """The world the runs live in."""
    return request.app[CONTROL].world


def make_state(app: web.Application) -> UiState:
    """Build the UI state for ``app`` (templates with autoescape, sessions from the token)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("worldflow.inspector.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        dur=format_ms,
        size=format_size,
        when=_when,
        ago=_ago,
        short=_short,
        summary=summary,
        payload=show_payload,
        plain_json=lambda raw: show_payload(raw, highlight=False),
        present=lambda raw: raw is not None and bytes(raw) != b"null",
    )
    env.globals["RunStatus"] = RunStatus
    settings = app.get(SETTINGS)
    token = settings.token if settings is not None else None
    return UiState(env=env, sessions=Sessions(token), options=app.get(UI_OPTIONS, UiOptions()))


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 0:
        return "in " + format_ms(-seconds * 1000)
    if seconds < 1:
        return "just now"
    return format_ms(seconds * 1000).replace(".0", "") + " ago"


def _short(name: str) -> str:
    return name.rpartition(":")[2] or name


def _qs(query: dict[str, Any]) -> str:
    return urlencode([(k, str(v)) for k, v in query.items() if v is not None and v != ""])


def security_headers(response: web.StreamResponse) -> None:
    """The headers every UI response carries."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"


def url_for(
    request: web.Request, name: str, /, query: dict[str, Any] | None = None, **parts: str
) -> str:
    """The URL of route ``name`` (under the app's mount prefix), with a query string."""
    url = str(request.app.router[name].url_for(**parts))
    if query:
        pairs = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
        if pairs:
            url += "?" + urlencode(pairs)
    return url


DONE = {
    "cancelled": "Run cancelled.",
    "suspended": "Run suspended.",
    "resumed": "Run resumed.",
    "raised": "Event raised.",
    "resolved": "Hook resolved.",
    "step-resumed": "Step resumed.",
    "woken": "Sleep woken: the run goes on now.",
    "retried": "Step retried now.",
    "rerun": "Started as a rerun of the run it came from.",
    "forked": "Started as a fork of the run it came from; that run's log is untouched.",
    "started": "Run started.",
    "purged": "Run purged.",
    "failed": "Run failed for good.",
    "unstalled": "The code replays the run: it goes on.",
    "still-stalled": "The code still does not replay the run: it stays stalled.",
}
"""The messages a redirect's ``?done=`` shows (fixed texts: a link cannot inject one)."""

LIVE_TASKS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("worldflow.ui.live", set)
"""The live streams being served (cancelled when the app shuts down)."""


def base_context(request: web.Request, session: Session | None) -> dict[str, Any]:
    """What every template may use: ``url()``, ``static()``, the session, the options."""
    state = ui_state(request)

    def url(name: str, /, query: dict[str, Any] | None = None, **parts: str) -> str:
        return url_for(request, name, query, **parts)

    # one router lookup per page, not one per row
    run_prefix = url_for(request, "ui.run", run_id="_")[:-1]

    def run_url(run_id: str) -> str:
        return run_prefix + quote(run_id, safe="")

    return {
        "url": url,
        "run_url": run_url,
        "qs": _qs,
        "static": lambda path: url_for(request, "ui.static", path=path),
        "session": session,
        "csrf": session.csrf if session else "",
        "auth": state.sessions.auth_required,
        "read_only": state.options.read_only,
        "title": state.options.title,
        "path": request.path_qs,
        "nav": "",
        "done": request.query.get("done"),
        "done_message": DONE.get(request.query.get("done", "")),
    }


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    session: Session | None = None,
    **context: Any,
) -> web.Response:
    """Render ``template`` as an HTML response with the security headers."""
    state = ui_state(request)
    html = state.env.get_template(template).render(**base_context(request, session), **context)
    response = web.Response(text=html, status=status, content_type="text/html")
    security_headers(response)
    response.headers["Cache-Control"] = "no-store"
    return response
