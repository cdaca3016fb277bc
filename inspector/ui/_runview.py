"""Everything the run page shows, read from the world once per render.

The same function feeds the full page and the regions a live update swaps in, so a live page
and a reload always agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from worldflow import build_timeline
from worldflow.errors import RunNotFoundError, StepNotFoundError
from worldflow.inspector.ui._layout import Layout, layout_timeline
from worldflow.inspector.ui._spans import CHILD_STEP, child_target
from worldflow.inspector.ui._state import control, ui_state, url_for, world
from worldflow.inspector.ui._waiting import waiting_on
from worldflow.worlds import (
    AnyEvent,
    HookCreated,
    HookStatus,
    PatchMarked,
    RunCancelled,
    RunStalled,
    RunStatus,
    Step,
    StepCreated,
    WaitCreated,
    WaitStatus,
    WorkflowRun,
    World,
    encode_event,
)

__all__ = [
    "EVENT_CAP",
    "EVENT_PAGE",
    "ROW_PAGE",
    "Action",
    "EventRow",
    "actions_for",
    "described_rows",
    "event_rows",
    "load_run_view",
]

EVENT_CAP = 20_000
"""Events read for one page; a longer log is laid out from its first part (and says so)."""
EVENT_PAGE = 200
"""Events in the log table per page (the newest by default)."""
ROW_PAGE = 500
"""Timeline rows per page."""
EVENT_DETAIL_LIMIT = 4096
FORK_STEPS = 500
"""Steps offered in the fork form's list (a longer run: fork from its timeline)."""
FORKS_SHOWN = 20
"""Forks and reruns of a run named on its page."""


class Action(msgspec.Struct, frozen=True, kw_only=True):
    """A button: whether it applies now, and if not, why (shown next to it)."""

    name: str
    label: str
    enabled: bool
    reason: str = ""


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the event log table."""

    seq: int
    type: str
    at: datetime
    offset_ms: int
    correlation_id: str | None
    text: str
    size: int
    json: bytes | None


def actions_for(
    run: WorkflowRun,
    ops: object,
    *,
    read_only: bool,
    sleeping: bool = False,
    backing_off: bool = False,
) -> dict[str, Action]:
    """Which run actions apply, each with the reason it does not (``sleeping``: the run is in
    a durable sleep; ``backing_off``: one of its steps waits to retry)."""
    status = run.status
    terminal = status.is_terminal
    done = f"Run already {status.value}"
    stalled = status is RunStatus.STALLED

    def make(name: str, label: str, ok: bool, why: str, method: str | None = None) -> Action:
        if read_only:
            return Action(name=name, label=label, enabled=False, reason="read-only")
        if method is not None and not callable(getattr(ops, method, None)):
            return Action(
                name=name,
                label=label,
                enabled=False,
                reason="not supported by this control plane yet",
            )
        return Action(name=name, label=label, enabled=ok, reason="" if ok else why)

    return {
        "cancel": make("cancel", "Cancel", not terminal, done, "cancel"),
        "suspend": make(
            "suspend",
            "Suspend",
            status in (RunStatus.PENDING, RunStatus.RUNNING),
            "Run is suspended" if status is RunStatus.SUSPENDED else done,
            "suspend",
        ),
        "resume": make(
            "resume",
            "Resume",
            status is RunStatus.SUSPENDED,
            done if terminal else "Run is not suspended",
            "resume",
        ),
        "raise_event": make("raise_event", "Raise event", not terminal, done, "raise_event"),
        "rerun": make("rerun", "Rerun", True, "", "rerun"),
        "fork": make("fork", "Fork", True, "", "fork"),
        "purge": make("purge", "Purge", terminal, "Only a finished run can be purged", "purge"),
        "fail": make("fail", "Fail run", stalled, "Only a stalled run can be failed", "fail"),
        "unstall": make(
            "unstall", "Retry replay", stalled, "Only a stalled run is replayed again", "unstall"
        ),
        "resolve": make("resolve", "Resolve", not terminal, done, "resume_hook"),
        "resume_step": make("resume_step", "Resume step", not terminal, done, "resume_step"),
        "wake": make(
            "wake",
            "Wake now",
            sleeping and not terminal,
            done if terminal else "Nothing is sleeping: the run waits on no timer",
            "wake",
        ),
        "retry_now": make(
            "retry_now",
            "Retry now",
            backing_off and not terminal,
            done if terminal else "No step is backing off after a failed attempt",
            "retry_now",
        ),
    }


def _span_fork(fork: Action, span: Step) -> Action:
    """The fork button of the step panel: the run's, unless this step cannot be forked from."""
    if fork.enabled and span.step_name == CHILD_STEP:
        why = "This step starts a child workflow: fork the child run, or from another step"
        return Action(name="fork", label=fork.label, enabled=False, reason=why)
    return fork


def event_rows(
    events: Sequence[AnyEvent], texts: Sequence[str], offsets: Sequence[int]
) -> list[EventRow]:
    """Table rows for ``events`` (with their timeline texts and offsets, same order)."""
    rows = []
    for event, text, offset in zip(events, texts, offsets, strict=True):
        encoded = encode_event(event)
        rows.append(
            EventRow(
                seq=event.seq,
                type=event.type,
                at=event.created_at,
                offset_ms=offset,
                correlation_id=event.correlation_id,
                text=text,
                size=len(encoded),
                json=encoded if len(encoded) <= EVENT_DETAIL_LIMIT else None,
            )
        )
    return rows


_CREATIONS = (StepCreated, WaitCreated, HookCreated)


def described_rows(events: Sequence[AnyEvent], picked: Sequence[int]) -> list[EventRow]:
    """Table rows for ``events[i]`` for each ``i`` in ``picked``, with their timeline texts.

    The texts name a step, hook or wait by its creation event, so only those (and the run's
    first event, the origin of the offsets) are told besides the picked ones: a page of a
    10k-event log costs a page, not the log.
    """
    wanted = {events[i].correlation_id for i in picked} - {None}
    told: dict[int, AnyEvent] = {events[0].seq: events[0]} if events else {}
    for event in events:
        if isinstance(event, _CREATIONS) and event.correlation_id in wanted:
            told[event.seq] = event
    for i in picked:
        told[events[i].seq] = events[i]
    ordered = [told[seq] for seq in sorted(told)]
    by_seq = {entry.seq: entry for entry in build_timeline(ordered)}
    shown = [events[i] for i in picked]
    return event_rows(
        shown, [by_seq[e.seq].text for e in shown], [by_seq[e.seq].offset_ms for e in shown]
    )


async def _all_events(w: World, run_id: str) -> tuple[list[AnyEvent], bool]:
    listed = await w.list_events(run_id, limit=EVENT_CAP)
    return listed.items, listed.has_more


async def _all_steps(w: World, run_id: str) -> list[Step]:
    steps: list[Step] = []
    cursor: str | None = None
    while True:
        listed = await w.list_steps(run_id, cursor=cursor)
        steps.extend(listed.items)
        if not listed.has_more or len(steps) >= EVENT_CAP:
            return steps
        cursor = listed.cursor


async def _maybe_run(w: World, run_id: str) -> WorkflowRun | None:
    try:
        return await w.get_run(run_id)
    except RunNotFoundError:
        return None


def _int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise ValueError(f"`{name}` must be a number, got {text!r}")
    return int(text)


async def load_run_view(request: web.Request, run_id: str | None = None) -> dict[str, Any]:
    """The run page's context (see the module docstring)."""
    rid = run_id or request.match_info["run_id"]
    w = world(request)
    run = await w.get_run(rid)
    (events, truncated), hooks, waits, steps, streams = await asyncio.gather(
        _all_events(w, rid),
        w.list_hooks(run_id=rid, status=HookStatus.ACTIVE),
        w.list_waits(run_id=rid, status=WaitStatus.WAITING),
        _all_steps(w, rid),
        w.list_streams(rid),
    )
    now = datetime.now(UTC)
    compress = request.query.get("idle") != "show"
    expand = frozenset(request.query.getall("expand", []))
    child_ids = [
        target[1]
        for e in events
        if isinstance(e, StepCreated)
        and e.step_name == CHILD_STEP
        and (target := child_target(e.input)) is not None
    ]
    fetched = await asyncio.gather(*(_maybe_run(w, c) for c in child_ids[:200]))
    children = {c: r for c, r in zip(child_ids, fetched, strict=False) if r is not None}
    rows_from = _int(request, "rows") or 0
    layout: Layout = layout_timeline(
        events,
        now=now,
        compress=compress,
        expand=expand,
        child_status={c: r.status.value for c, r in children.items()},
        rows_from=rows_from,
        rows_limit=ROW_PAGE,
    )
    rows = layout.rows[1:]
    more_rows = rows_from + ROW_PAGE < layout.row_count

    # the event log: filtered by type, the newest page unless ?before=SEQ / ?after=SEQ
    types = sorted({e.type for e in events})
    wanted = [t for t in request.query.getall("type", []) if t]
    picked = [i for i, e in enumerate(events) if not wanted or e.type in wanted]
    before, after = _int(request, "before"), _int(request, "after")
    if after is not None:
        picked = [i for i in picked if events[i].seq > after][:EVENT_PAGE]
    else:
        if before is not None:
            picked = [i for i in picked if events[i].seq < before]
        picked = picked[-EVENT_PAGE:]
    shown = [events[i] for i in picked]
    rows_of_events = described_rows(events, picked)
    older = shown and any(
        e.seq < shown[0].seq and (not wanted or e.type in wanted) for e in events[: picked[0]]
    )
    newer = (
        bool(shown)
        and picked[-1] < len(events) - 1
        and any(not wanted or e.type in wanted for e in events[picked[-1] + 1 :])
    )

    parent = await _maybe_run(w, run.parent_run_id) if run.parent_run_id else None
    rerun_of = run.forked_from
    span_id = request.query.get("span")
    span: Step | None = None
    if span_id:
        try:
            span = await w.get_step(rid, span_id)
        except StepNotFoundError:
            span = None
    ops = control(request)
    options = ui_state(request).options
    blocked = getattr(ops, "blocked_on", None)
    try:
        engine_sees = blocked(rid) if callable(blocked) else None
    except Exception:
        engine_sees = None
    stall = next((e for e in reversed(events) if isinstance(e, RunStalled)), None)
    cancelled = next((e for e in reversed(events) if isinstance(e, RunCancelled)), None)
    waiting = waiting_on(
        run,
        hooks=hooks.items,
        waits=waits.items,
        steps=steps,
        now=now,
        children=children,
        stall=stall,
    )
    actions = actions_for(
        run,
        ops,
        read_only=options.read_only,
        sleeping=any(w.kind == "sleep" for w in waiting),
        backing_off=any(w.kind == "backoff" for w in waiting),
    )
    forks = await w.list_runs(forked_from=rid, limit=FORKS_SHOWN)
    query = {k: v for k, v in request.query.items() if k in ("idle", "type", "span")}
    return {
        "run": run,
        "layout": layout,
        "rows": rows,
        "run_row": layout.rows[0] if layout.rows else None,
        "rows_from": rows_from,
        "more_rows": more_rows,
        "truncated": truncated,
        "event_count": run.last_seq,
        "events": rows_of_events,
        "event_types": types,
        "wanted_types": wanted,
        "older_seq": shown[0].seq if older else None,
        "newer_seq": shown[-1].seq if newer else None,
        "waiting": waiting,
        "cancelled_by": None if cancelled is None else cancelled.actor,
        "patches": list(dict.fromkeys(e.name for e in events if isinstance(e, PatchMarked))),
        "event_waited": next((x.event_name for x in waiting if x.event_name), ""),
        "engine_sees": engine_sees,
        "children": children,
        "parent": parent,
        "rerun_of": rerun_of,
        "streams": streams,
        "steps": {s.step_id: s for s in steps},
        "span": span,
        "actions": actions,
        "fork_steps": [s for s in steps if s.step_name != CHILD_STEP][:FORK_STEPS],
        "span_fork": None if span is None else _span_fork(actions["fork"], span),
        "forks": forks.items,
        "more_forks": forks.has_more,
        "now": now,
        "compress": compress,
        "query": query,
        "live_url": url_for(request, "ui.run.live", query, run_id=rid),
        "is_live": not run.status.is_terminal,
        "all_events": events,
    }
