"""The inspector's pages: runs, one run, hooks, workflows, login, payload downloads.

Every page is complete HTML from the server (it works with JavaScript off, as a snapshot);
the script only swaps in fresh server-rendered regions when live updates arrive.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from worldflow.errors import RunNotFoundError, StepNotFoundError
from worldflow.inspector._routes import route
from worldflow.inspector.ui._filters import PAGE_SIZES, RunFilter, parse_filter
from worldflow.inspector.ui._guard import UiError, page, stream
from worldflow.inspector.ui._runview import load_run_view
from worldflow.inspector.ui._session import Session
from worldflow.inspector.ui._state import (
    LIVE_TASKS,
    control,
    render,
    security_headers,
    ui_state,
    url_for,
    world,
)
from worldflow.worlds import HookStatus, RunStatus, WorkflowRun, World

__all__ = [
    "hooks_page",
    "login",
    "login_form",
    "logout",
    "payload",
    "run_page",
    "runs_page",
    "workflows_page",
]

SEARCH_SCAN = 20_000
"""Runs (newest first) a prefix search looks through."""
COUNT_SCAN = 10_000
"""Runs (newest first) the counts by status look through; past that they read "≥"."""


async def _scan_counts(w: World, f: RunFilter) -> tuple[dict[str, int], int, bool]:
    """Runs by status among the newest :data:`COUNT_SCAN` matching the filter's other parts."""
    counts: dict[str, int] = {s.value: 0 for s in RunStatus}
    seen = 0
    cursor: str | None = None
    capped = False
    args = {**f.world_args(), "status": None}
    while True:
        listed = await w.list_runs(**args, limit=1000, cursor=cursor)  # type: ignore[arg-type]
        for run in listed.items:
            counts[run.status.value] = counts.get(run.status.value, 0) + 1
        seen += len(listed.items)
        if not listed.has_more:
            break
        if seen >= COUNT_SCAN:
            capped = True
            break
        cursor = listed.cursor
    return counts, seen, capped


async def counts_for(request: web.Request, f: RunFilter) -> tuple[dict[str, int], int, bool, bool]:
    """Runs by status for the filter (without its status part): ``(counts, seen, capped,
    stale)``.

    Computed once, then kept per world change: when the world changed since, the last
    counts are returned at once (``stale``) and fresh ones are computed in the background
    (the page never waits on a count; the live list sends the fresh ones).
    """
    w = world(request)
    state = ui_state(request)
    changes = await w.wait_for_world(after=2**62, timeout=0)
    key = (f.workflow, f.resource_id, f.metadata, f.created_after, f.created_before, f.forked_from)
    cached = state.counts.get(key)
    if cached is None:
        counts, seen, capped = await _scan_counts(w, f)
        if len(state.counts) > 256:
            state.counts.clear()
        state.counts[key] = (changes, counts, seen, capped)
        return counts, seen, capped, False
    stale = cached[0] != changes
    if stale and key not in state.refreshing:
        state.refreshing.add(key)
        tasks = request.app[LIVE_TASKS]

        async def refresh() -> None:
            try:
                counts, seen, capped = await _scan_counts(w, f)
                state.counts[key] = (changes, counts, seen, capped)
            finally:
                state.refreshing.discard(key)

        task = asyncio.get_running_loop().create_task(refresh())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return cached[1], cached[2], cached[3], stale


async def _search(w: World, f: RunFilter) -> tuple[list[WorkflowRun], int, bool]:
    """Runs whose id starts with the search text, newest first; how many were looked at."""
    text = f.search or ""
    found: list[WorkflowRun] = []
    seen = 0
    cursor: str | None = None
    while seen < SEARCH_SCAN and len(found) < f.limit:
        listed = await w.list_runs(**f.world_args(), limit=1000, cursor=cursor)  # type: ignore[arg-type]
        seen += len(listed.items)
        found.extend(r for r in listed.items if r.run_id.startswith(text))
        if not listed.has_more:
            return found[: f.limit], seen, False
        cursor = listed.cursor
    return found[: f.limit], seen, True


@page
async def runs_page(request: web.Request, session: Session) -> web.StreamResponse:
    """The runs list: filters in the URL, keyset pages, counts by status, search by id."""
    f = parse_filter(request.query)
    w = world(request)
    searched: tuple[int, bool] | None = None
    if f.search:
        try:
            run = await w.get_run(f.search)
        except RunNotFoundError:
            pass
        else:
            raise web.HTTPSeeOther(url_for(request, "ui.run", run_id=run.run_id))
        runs, seen, capped = await _search(w, f)
        searched = (seen, capped)
        cursor, has_more = None, False
    else:
        listed = await w.list_runs(**f.world_args(), limit=f.limit, cursor=f.cursor)  # type: ignore[arg-type]
        runs, cursor, has_more = listed.items, listed.cursor, listed.has_more
    counts, counted, capped_counts, stale_counts = await counts_for(request, f)
    workflows = sorted({r.workflow_name for r in runs} | ({f.workflow} if f.workflow else set()))
    for info in await _catalog(request):
        if info not in workflows:
            workflows.append(info)
    return render(
        request,
        "runs.html",
        session=session,
        f=f,
        runs=runs,
        next_query=f.query(cursor=cursor) if has_more and cursor else None,
        first_query=f.query() if f.cursor else None,
        counts=counts,
        counted=counted,
        capped_counts=capped_counts,
        stale_counts=stale_counts,
        searched=searched,
        page_sizes=PAGE_SIZES,
        workflows=sorted(workflows),
        statuses=list(RunStatus),
        now=datetime.now(UTC),
        live_ids=" ".join(r.run_id for r in runs),
        newest=runs[0].run_id if runs and not f.cursor else "",
    )


async def _listed(request: web.Request) -> list[Any] | None:
    """The control plane's workflows (a Client reads them from the world's catalog)."""
    listing = getattr(control(request), "list_workflows", None)
    if listing is None:
        return None
    got = listing()
    return list(await got if inspect.isawaitable(got) else got)


async def _catalog(request: web.Request) -> list[str]:
    try:
        return [info.name for info in await _listed(request) or []]
    except Exception:
        return []


@page
async def run_page(request: web.Request, session: Session) -> web.StreamResponse:
    """One run: header, waiting on, timeline, events, payloads, streams, children."""
    view = await load_run_view(request)
    return render(request, "run.html", session=session, **view)


_PAYLOADS = ("input", "output", "state", "error")


@stream
async def payload(request: web.Request, session: Session) -> web.StreamResponse:
    """Download one payload in full, as an attachment (never rendered by the browser).

    ``/runs/{id}/payload/{what}`` with ``what`` one of ``input``, ``output``, ``state``,
    ``error``; ``?step=ID&part=input|output|error`` for a step's; ``?seq=N`` for an event.
    """
    run_id = request.match_info["run_id"]
    what = request.match_info["what"]
    w = world(request)
    run = await w.get_run(run_id)
    data: bytes
    name = f"{run_id}-{what}.json"
    step_id = request.query.get("step")
    seq = request.query.get("seq")
    if step_id:
        try:
            step = await w.get_step(run_id, step_id)
        except StepNotFoundError as exc:
            raise UiError(404, str(exc)) from None
        data = _part(step, what)
        name = f"{run_id}-{step_id}-{what}.json"
    elif seq:
        if not seq.isdigit():
            raise UiError(400, f"`seq` must be a number, got {seq!r}")
        events = await w.list_events(run_id, after_seq=int(seq) - 1, limit=1)
        if not events.items or events.items[0].seq != int(seq):
            raise UiError(404, f"run {run_id} has no event {seq}")
        data = msgspec.json.encode(events.items[0])
        name = f"{run_id}-event-{seq}.json"
    elif what in _PAYLOADS:
        data = _part(run, what)
    else:
        raise UiError(404, f"no payload {what!r}: use one of {', '.join(_PAYLOADS)}")
    response = web.Response(body=data, content_type="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{_safe(name)}"'
    security_headers(response)
    return response


def _part(record: Any, what: str) -> bytes:
    if what == "error":
        error = getattr(record, "error", None)
        return msgspec.json.encode(error)
    if what == "input":
        return bytes(record.input)
    if what == "output":
        return bytes(record.output)
    if what == "state" and hasattr(record, "state"):
        return bytes(record.state)
    raise UiError(404, f"no payload {what!r} here")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@page
async def hooks_page(request: web.Request, session: Session) -> web.StreamResponse:
    """Active hooks of the world, newest last, each with a resolve form."""
    w = world(request)
    cursor = request.query.get("cursor") or None
    listed = await w.list_hooks(status=HookStatus.ACTIVE, limit=100, cursor=cursor)
    hooks = [h for h in listed.items if not h.token.startswith("worldflow:child:")]
    return render(
        request,
        "hooks.html",
        session=session,
        hooks=hooks,
        next_cursor=listed.cursor if listed.has_more else None,
        now=datetime.now(UTC),
    )


@page
async def workflows_page(request: web.Request, session: Session) -> web.StreamResponse:
    """The workflows this control plane serves: parameters, steps, docstring, a start form."""
    listed = await _listed(request)
    return render(
        request,
        "workflows.html",
        session=session,
        workflows=listed or [],
        can_list=listed is not None,
        published={w.name for w in listed or [] if hasattr(w, "engines")},
    )


@route(public=True)
async def login_form(request: web.Request) -> web.StreamResponse:
    """The login form (the token, once; then a session cookie)."""
    state = ui_state(request)
    if not state.sessions.auth_required or state.sessions.get(request) is not None:
        raise web.HTTPSeeOther(_next(request, request.query.get("next")))
    return render(
        request, "login.html", session=None, next=request.query.get("next", ""), error=None
    )


@route(public=True)
async def login(request: web.Request) -> web.StreamResponse:
    """Check the token; on success set the session cookie and go where the user was going."""
    state = ui_state(request)
    form = await request.post()
    token = form.get("token")
    target = form.get("next")
    nxt = target if isinstance(target, str) else ""
    if not isinstance(token, str) or not state.sessions.check_token(token.strip()):
        return render(
            request,
            "login.html",
            status=401,
            session=None,
            next=nxt,
            error="That is not the inspector's token.",
        )
    response = web.HTTPSeeOther(_next(request, nxt))
    _, value = state.sessions.new()
    state.sessions.set_cookie(response, request, value)
    raise response


def _next(request: web.Request, target: str | None) -> str:
    home = url_for(request, "ui.home")
    # only a path inside this app: never an open redirect to another site
    if target and target.startswith(home) and not target.startswith("//"):
        return target
    return home


@route(public=True)
async def logout(request: web.Request) -> web.StreamResponse:
    """Forget the session cookie."""
    response = web.HTTPSeeOther(url_for(request, "ui.login"))
    ui_state(request).sessions.clear(response, request)
    raise response
