"""Live updates by server-sent events, resumable from the last ``seq``.

The run's own log is the replay buffer: a message's ``id:`` is the ``seq`` of the newest event
it carries, and a reconnecting ``EventSource`` sends it back as ``Last-Event-ID``, so the
stream goes on right after it: no event is lost and none comes twice (the page also ignores a
row it already has). Each message carries HTML rendered by the page's own templates (new
event-log rows, and the header, actions, waiting-on, timeline and data regions); the script only
inserts that HTML, never builds any from data.

Wake-ups come from the world's notifications (``wait_for_run`` / ``wait_for_world``), never
from polling; updates are coalesced (at most four a second) and a comment line goes out every
:data:`HEARTBEAT` seconds so proxies keep the connection open. A finished run sends ``end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from worldflow.errors import RunNotFoundError, StreamNotFoundError
from worldflow.inspector.ui._filters import parse_filter
from worldflow.inspector.ui._guard import page, stream
from worldflow.inspector.ui._pages import counts_for
from worldflow.inspector.ui._payloads import summary
from worldflow.inspector.ui._runview import described_rows, load_run_view
from worldflow.inspector.ui._session import Session
from worldflow.inspector.ui._state import LIVE_TASKS, base_context, render, ui_state, world
from worldflow.worlds import encode_event

__all__ = ["HEARTBEAT", "export_events", "run_live", "runs_live", "stream_live", "stream_page"]

HEARTBEAT = 15.0
COALESCE = 0.25
BATCH = 500
_REGIONS = {
    "header": "run/_header.html",
    "actions": "run/_actions.html",
    "waiting": "run/_waiting.html",
    "timeline": "run/_timeline.html",
    "data": "run/_data.html",
}


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


def _message(event: str, data: object, msg_id: int | None = None) -> bytes:
    lines = [] if msg_id is None else [f"id: {msg_id}"]
    lines.append(f"event: {event}")
    # JSON never holds a raw newline, so it is one data line
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def _resume_point(request: web.Request, name: str = "last") -> int:
    text = request.headers.get("Last-Event-ID") or request.query.get(name) or "0"
    if not text.isdigit():
        raise ValueError(f"`Last-Event-ID` / `{name}` must be a number, got {text!r}")
    return int(text)


@contextlib.contextmanager
def _tracked(request: web.Request) -> Iterator[None]:
    tasks = request.app[LIVE_TASKS]
    task = asyncio.current_task()
    if task is not None:
        tasks.add(task)
    try:
        yield None
    finally:
        if task is not None:
            tasks.discard(task)


async def _wait(coro: object, timeout: float) -> bool:
    """Await a world notification; ``False`` when the heartbeat interval passed first."""
    try:
        await asyncio.wait_for(coro, timeout)  # type: ignore[arg-type]
    except TimeoutError:
        return False
    return True


@stream
async def run_live(request: web.Request, session: Session) -> web.StreamResponse:
    """``GET /runs/{id}/live``: new event rows and fresh regions, from ``Last-Event-ID``."""
    run_id = request.match_info["run_id"]
    w = world(request)
    sent = _resume_point(request)
    await w.get_run(run_id)  # 404 before the stream opens
    env = ui_state(request).env
    response = await _open_stream(request)
    with _tracked(request):
        try:
            while True:
                view = await load_run_view(request, run_id)
                run = view["run"]
                if run.last_seq > sent:
                    events = view["all_events"]
                    start = next((i for i, e in enumerate(events) if e.seq > sent), len(events))
                    picked = list(range(start, min(len(events), start + BATCH)))
                    fresh = [events[i] for i in picked]
                    rows = described_rows(events, picked)
                    context = {**base_context(request, session), **view}
                    macros: Any = env.get_template("_rows.html").make_module(context)
                    html = "".join(str(macros.event_row(e, run_id)) for e in rows)
                    regions = {
                        name: env.get_template(tpl).render(**context)
                        for name, tpl in _REGIONS.items()
                    }
                    sent = fresh[-1].seq if fresh else run.last_seq
                    await response.write(
                        _message(
                            "update",
                            {"seq": sent, "rows": html, "regions": regions, "count": len(rows)},
                            sent,
                        )
                    )
                    if sent < run.last_seq:
                        continue  # more than one batch behind: send the next at once
                if run.status.is_terminal:
                    await response.write(_message("end", {"status": run.status.value}))
                    break
                woke = await _wait(w.wait_for_run(run_id, after_seq=sent), HEARTBEAT)
                if not woke:
                    await response.write(b": keep-alive\n\n")
                    continue
                await asyncio.sleep(COALESCE)
        except (ConnectionResetError, RunNotFoundError):
            pass
    return response


@stream
async def runs_live(request: web.Request, session: Session) -> web.StreamResponse:
    """``GET /live/runs``: fresh rows for the runs on screen, and how many runs are new."""
    w = world(request)
    f = parse_filter(request.query)
    ids = [i for i in request.query.get("ids", "").split() if i][:500]
    newest = request.query.get("newest", "")
    env = ui_state(request).env
    response = await _open_stream(request)
    seen = await w.wait_for_world(after=2**62, timeout=0)
    context = base_context(request, session)
    macros: Any = env.get_template("_rows.html").make_module(context)
    with _tracked(request):
        try:
            while True:
                if not await _wait(w.wait_for_world(after=seen), HEARTBEAT):
                    await response.write(b": keep-alive\n\n")
                    continue
                await asyncio.sleep(COALESCE)
                seen = await w.wait_for_world(after=2**62, timeout=0)
                now = datetime.now(UTC)
                rows: dict[str, str] = {}
                for run_id in ids:
                    try:
                        run = await w.get_run(run_id)
                    except RunNotFoundError:
                        continue
                    rows[run_id] = str(macros.run_row(run, now))
                new = 0
                if newest:
                    listed = await w.list_runs(**f.world_args(), limit=100)  # type: ignore[arg-type]
                    for run in listed.items:
                        if run.run_id == newest:
                            break
                        new += 1
                counts, _, _, _ = await counts_for(request, f)
                await response.write(
                    _message("runs", {"rows": rows, "new": new, "counts": counts}, seen)
                )
        except ConnectionResetError:
            pass
    return response


_CHUNK_PAGE = 500


class _Chunk:
    __slots__ = ("index", "text")

    def __init__(self, index: int, data: bytes) -> None:
        self.index = index
        self.text = summary(data, width=4000)


@page
async def stream_page(request: web.Request, session: Session) -> web.StreamResponse:
    """A run's stream: the last chunks, followed live while it is open."""
    run_id, name = request.match_info["run_id"], request.match_info["stream"]
    w = world(request)
    run = await w.get_run(run_id)
    info = next((s for s in await w.list_streams(run_id) if s.name == name), None)
    if info is None:
        raise StreamNotFoundError(f"run {run_id} has no stream {name!r}")
    start_text = request.query.get("start")
    start = (
        int(start_text)
        if start_text and start_text.isdigit()
        else max(0, info.length - _CHUNK_PAGE)
    )
    chunks: list[_Chunk] = []
    async for chunk in w.read_stream(run_id, name, start=start, follow=False):
        chunks.append(_Chunk(chunk.index, chunk.data))
        if len(chunks) >= _CHUNK_PAGE:
            break
    return render(
        request,
        "stream.html",
        session=session,
        run=run,
        name=name,
        info=info,
        chunks=chunks,
        start=start,
    )


@stream
async def stream_live(request: web.Request, session: Session) -> web.StreamResponse:
    """``GET /runs/{id}/streams/{name}/live``: new chunks from ``Last-Event-ID`` + 1."""
    run_id, name = request.match_info["run_id"], request.match_info["stream"]
    w = world(request)
    header = request.headers.get("Last-Event-ID")
    start = int(header) + 1 if header and header.isdigit() else _resume_point(request, "next")
    tpl = ui_state(request).env.get_template("_chunk.html")
    response = await _open_stream(request)
    with _tracked(request):
        try:
            async for chunk in w.read_stream(run_id, name, start=start, follow=True):
                html = tpl.render(c=_Chunk(chunk.index, chunk.data))
                await response.write(_message("chunk", {"html": html}, chunk.index))
            await response.write(_message("end", {}))
        except (ConnectionResetError, StreamNotFoundError):
            pass
    return response


@stream
async def export_events(request: web.Request, session: Session) -> web.StreamResponse:
    """The run's whole log as JSONL, as a download."""
    run_id = request.match_info["run_id"]
    w = world(request)
    await w.get_run(run_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="{_safe(run_id)}.jsonl"',
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    after = 0
    while True:
        listed = await w.list_events(run_id, after_seq=after, limit=1000)
        if listed.items:
            await response.write(b"".join(encode_event(e) + b"\n" for e in listed.items))
            after = listed.items[-1].seq
        if not listed.has_more:
            break
    await response.write_eof()
    return response


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
