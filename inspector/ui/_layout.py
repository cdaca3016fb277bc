"""The run timeline's geometry, computed on the server from the event log (pure, no I/O).

One row per step, wait, hook and child run, ordered by start; the bar of a step holds its
queued time, every attempt (failed ones marked) and the backoff between them. Overlapping bars
are parallel work. Stretches where nothing runs and that take at least a tenth of the run (and
at least :data:`MIN_GAP_MS`) are compressed into a fixed-width break labelled with their length
("3 d idle"), so a long sleep does not squash everything else into a line. Positions are
percentages of the track, rendered as SVG rectangles (no inline styles, so the page keeps a
strict Content-Security-Policy).

The same function lays out a full page load and a live refresh, so they always agree.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import msgspec

from worldflow.inspector.ui._spans import (
    CHILD_STEP,
    CHILD_TOKEN_PREFIX,
    Collector,
    Span,
    format_ms,
)
from worldflow.worlds import AnyEvent

__all__ = [
    "CHILD_STEP",
    "CHILD_TOKEN_PREFIX",
    "GROUP_THRESHOLD",
    "MIN_GAP_MS",
    "Gap",
    "Layout",
    "Mark",
    "Part",
    "Row",
    "Tick",
    "format_ms",
    "layout_timeline",
]

GAP_RATIO = 0.10  # Temporal's rule: an idle stretch ≥ 10 % of the run is compressed
MIN_GAP_MS = 1000.0
GAP_WIDTH = 4.0  # percent of the track per compressed break
MAX_GAPS_WIDTH = 30.0
MIN_BAR = 0.4  # percent: an instantaneous bar is still visible
GROUP_THRESHOLD = 20
"""Calls of one step name beyond this fold into one group row (unless expanded)."""


class Part(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a bar: ``queued``, ``running``, ``ok``, ``failed``, ``retry`` (a failed
    attempt that will run again), ``backoff``, ``suspended``, ``waiting`` or ``done``."""

    kind: str
    left: float
    width: float
    title: str


class Mark(msgspec.Struct, frozen=True, kw_only=True):
    """An instant on a row or on the run: a hook payload, a raised event, a state update."""

    kind: str
    at: float
    title: str
    seq: int


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the timeline.

    ``kind`` is ``run``, ``step``, ``group``, ``sleep``, ``event`` (a wait for a named event),
    ``hook`` or ``child``. ``name`` is the accessible name of the bar ("Step charge_card,
    completed after 3 attempts, 2.4 s, queued 120 ms").
    """

    key: str
    kind: str
    label: str
    status: str
    left: float
    width: float
    name: str
    seq: int
    parts: list[Part] = msgspec.field(default_factory=list)
    marks: list[Mark] = msgspec.field(default_factory=list)
    attempts: int = 0
    duration_ms: float = 0.0
    child_run_id: str | None = None
    count: int = 1
    detail: str = ""


class Gap(msgspec.Struct, frozen=True, kw_only=True):
    """A compressed idle stretch: where it sits on the track and how long it really was."""

    left: float
    width: float
    ms: float
    label: str


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """An axis label at ``left`` percent."""

    left: float
    label: str


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """The whole timeline: rows (after grouping), breaks, axis ticks, the run's own marks."""

    rows: list[Row]
    gaps: list[Gap]
    ticks: list[Tick]
    marks: list[Mark]
    total_ms: float
    compressed: bool
    idle_ms: float
    start: datetime | None
    end: datetime | None
    row_count: int = 0
    """Rows in all (the run's own row not counted); ``rows`` holds one page of them."""


# -- the compressed time scale ---------------------------------------------------------------


class _Scale:
    """Piecewise-linear map from ms since the run's start to percent of the track."""

    def __init__(
        self,
        total: float,
        active: list[tuple[float, float]],
        instants: Iterable[float],
        *,
        compress: bool,
    ) -> None:
        self.total = total
        gaps: list[tuple[float, float]] = []
        if compress and total > 0:
            covered = sorted([*active, *((t, t) for t in instants), (0.0, 0.0), (total, total)])
            reach = covered[0][1]
            for lo, hi in covered[1:]:
                if lo - reach >= max(GAP_RATIO * total, MIN_GAP_MS):
                    gaps.append((reach, lo))
                reach = max(reach, hi)
        self.gaps = gaps
        idle = sum(hi - lo for lo, hi in gaps)
        width = min(GAP_WIDTH, MAX_GAPS_WIDTH / len(gaps)) if gaps else 0.0
        live = total - idle
        room = 100.0 - width * len(gaps)
        # knots: (ms, percent) at each boundary, linear in between
        self.xs: list[float] = [0.0]
        self.ys: list[float] = [0.0]
        pos = 0.0
        for lo, hi in gaps:
            pos += (lo - self.xs[-1]) / live * room if live > 0 else 0.0
            self.xs.append(lo)
            self.ys.append(pos)
            pos += width
            self.xs.append(hi)
            self.ys.append(pos)
        self.xs.append(total)
        self.ys.append(100.0)
        self.gap_width = width
        self.idle = idle

    def __call__(self, ms: float) -> float:
        if self.total <= 0:
            return 0.0
        ms = min(max(ms, 0.0), self.total)
        i = bisect.bisect_right(self.xs, ms) - 1
        if i >= len(self.xs) - 1:
            return 100.0
        x0, x1, y0, y1 = self.xs[i], self.xs[i + 1], self.ys[i], self.ys[i + 1]
        if x1 == x0:
            return y1
        return y0 + (ms - x0) / (x1 - x0) * (y1 - y0)

    def box(self, lo: float, hi: float) -> tuple[float, float]:
        left = self(lo)
        width = max(self(hi) - left, MIN_BAR)
        left = min(left, 100.0 - MIN_BAR)
        return round(left, 3), round(min(width, 100.0 - left), 3)


# -- rows ------------------------------------------------------------------------------------

_STATUS_WORD = {
    "completed": "completed",
    "failed": "failed",
    "running": "running",
    "retrying": "backing off",
    "pending": "queued",
    "suspended": "suspended",
    "waiting": "waiting",
    "received": "received",
    "disposed": "disposed",
    "started": "running",
    "done": "done",
}


def _accessible(span: Span, duration: float, queued: float | None) -> str:
    kind = {"step": "Step", "sleep": "Sleep", "event": "Wait for", "hook": "Hook"}.get(
        span.kind, "Child"
    )
    label = span.label[6:] if span.kind == "event" else span.label
    label = label[6:] if span.kind == "child" and label.startswith("child ") else label
    words = [f"{kind} {label}", _STATUS_WORD.get(span.status, span.status)]
    if span.kind == "step" and span.attempts:
        attempts = "attempt" if span.attempts == 1 else "attempts"
        if span.status in ("completed", "failed"):
            words[-1] += f" after {span.attempts} {attempts}"
        else:
            words[-1] += f", attempt {span.attempts}"
    words.append(format_ms(duration))
    if queued is not None and queued > 0:
        words.append(f"queued {format_ms(queued)}")
    return ", ".join(words)


def _row(span: Span, scale: _Scale, now: float) -> Row:
    pieces = list(span.pieces)
    end = span.end
    if end is None:  # still open: draw it up to now, and a planned end (sleep) if later
        pieces.append((span.open_kind, span.open_from, now, f"{span.open_kind} since"))
        end = now
    first_start = next((lo for kind, lo, _, _ in pieces if kind != "queued"), None)
    queued = (
        first_start - span.start
        if span.kind == "step" and first_start is not None and pieces[0][0] == "queued"
        else None
    )
    parts = []
    for kind, lo, hi, title in pieces:
        left, width = scale.box(lo, hi)
        parts.append(Part(kind=kind, left=left, width=width, title=title))
    if span.planned is not None and span.end is None and span.planned > now:
        left, width = scale.box(now, span.planned)
        parts.append(Part(kind="planned", left=left, width=width, title="wakes here"))
        end = max(end, span.planned)
    left, width = scale.box(span.start, end)
    marks = [Mark(kind=k, at=round(scale(t), 3), title=ti, seq=s) for k, t, ti, s in span.events]
    duration = (span.end if span.end is not None else now) - span.start
    return Row(
        key=span.key,
        kind=span.kind,
        label=span.label,
        status=span.status,
        left=left,
        width=width,
        name=_accessible(span, duration, queued),
        seq=span.seq,
        parts=parts,
        marks=marks,
        attempts=span.attempts,
        duration_ms=duration,
        child_run_id=span.child_run_id,
        detail=span.detail,
    )


GROUP_PARTS = 24
"""Calls drawn inside a group row's bar (the rest count in its numbers only)."""


def _span_end(span: Span, now: float) -> float:
    return span.end if span.end is not None else now


def _group(label: str, spans: list[Span], key: str, scale: _Scale, now: float) -> Row:
    lefts = [scale(s.start) for s in spans]
    rights = [scale(max(_span_end(s, now), s.planned or 0.0)) for s in spans]
    durations = [_span_end(s, now) - s.start for s in spans]
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.status] = counts.get(span.status, 0) + 1
    histogram = ", ".join(f"{n} {_STATUS_WORD.get(s, s)}" for s, n in sorted(counts.items()))
    median, longest = statistics.median(durations), max(durations)
    parts = []
    for span, duration in zip(spans[:GROUP_PARTS], durations, strict=False):
        left, width = scale.box(span.start, _span_end(span, now))
        title = f"{_STATUS_WORD.get(span.status, span.status)}, {format_ms(duration)}"
        parts.append(Part(kind="group", left=left, width=width, title=title))
    status = "failed" if "failed" in counts else max(counts, key=lambda s: counts[s])
    left = min(lefts)
    return Row(
        key=key,
        kind="group",
        label=f"{label} ×{len(spans)}",  # noqa: RUF001 (the times sign, on purpose)
        status=status,
        left=round(left, 3),
        width=round(max(max(rights) - left, MIN_BAR), 3),
        name=(
            f"Step group {label}, {len(spans)} calls: {histogram}; median "
            f"{format_ms(median)}, max {format_ms(longest)}"
        ),
        seq=spans[0].seq,
        parts=parts,
        count=len(spans),
        duration_ms=longest,
        detail=histogram,
    )


def _ticks(scale: _Scale, total: float) -> list[Tick]:
    ticks = [Tick(left=0.0, label="0")]
    if total <= 0:
        return ticks
    edges = [0.0, *[x for gap in scale.gaps for x in gap], total]
    labelled = 0.0
    for lo, hi in zip(edges[::2], edges[1::2], strict=True):
        span_pct = scale(hi) - scale(lo)
        steps = max(1, int(span_pct // 20))
        for i in range(1, steps + 1):
            t = lo + (hi - lo) * i / steps
            left = round(scale(t), 3)
            # a label needs room: none within 8 % of the last one (a short stretch after a
            # break keeps its tick mark but not its text)
            room = left - labelled >= 8 and left <= 92
            labelled = left if room else labelled
            ticks.append(Tick(left=left, label="+" + format_ms(t) if room else ""))
    return ticks


def layout_timeline(
    events: Iterable[AnyEvent],
    *,
    now: datetime | None = None,
    compress: bool = True,
    expand: frozenset[str] = frozenset(),
    group_threshold: int = GROUP_THRESHOLD,
    child_status: Mapping[str, str] | None = None,
    rows_from: int = 0,
    rows_limit: int | None = None,
) -> Layout:
    """Lay out a run's events (in ``seq`` order) as timeline rows.

    Args:
        events: The run's log, or its first part.
        now: The end of anything still open (a running step, a pending sleep); defaults to
            the last event's time.
        compress: Compress idle stretches into labelled breaks (``?idle=show`` turns it off).
        expand: Step names whose calls are not folded into a group row.
        group_threshold: Calls of one step name beyond this fold into one row.
        child_status: The status of child runs by run id, shown on their rows.
        rows_from: The first row to build (after the run's own row, which always comes).
        rows_limit: How many rows to build from there (``None``: all).
    """
    c = Collector()
    for event in events:
        c.feed(event)
    if c.t0 is None:
        return Layout(
            rows=[],
            gaps=[],
            ticks=[],
            marks=[],
            total_ms=0.0,
            compressed=False,
            idle_ms=0.0,
            start=None,
            end=None,
        )
    now_ms = c.last if now is None else max(c.last, (now - c.t0).total_seconds() * 1000.0)
    end_ms = c.run_end if c.run_end is not None else now_ms
    total = max(end_ms, max((s.planned or 0.0) for s in c.order) if c.order else 0.0)
    scale = _Scale(total, c.active, c.instants, compress=compress)
    open_end = end_ms
    children = child_status or {}

    rows: list[Row] = []
    # the run's own bar: running, with suspended stretches
    run_parts = []
    cursor = 0.0
    for lo, hi in c.suspended:
        stop = hi if hi is not None else open_end
        left, width = scale.box(cursor, lo)
        run_parts.append(Part(kind="running", left=left, width=width, title="running"))
        left, width = scale.box(lo, stop)
        run_parts.append(Part(kind="suspended", left=left, width=width, title="suspended"))
        cursor = stop
    if cursor < open_end or not run_parts:
        left, width = scale.box(cursor, open_end)
        kind = "ok" if c.run_status == "completed" else c.run_status
        run_parts.append(Part(kind=kind, left=left, width=width, title=c.run_status))
    marks = [Mark(kind=k, at=round(scale(t), 3), title=ti, seq=s) for k, t, ti, s in c.run_marks]
    left, width = scale.box(0.0, open_end)
    rows.append(
        Row(
            key="run",
            kind="run",
            label="run",
            status=c.run_status,
            left=left,
            width=width,
            name=f"Run, {c.run_status}, {format_ms(open_end)}",
            seq=1,
            parts=run_parts,
            marks=marks,
            duration_ms=open_end,
        )
    )

    by_name: dict[str, list[Span]] = {}
    for span in c.order:
        if span.kind == "step":
            by_name.setdefault(span.label, []).append(span)
    folded = {
        name
        for name, spans in by_name.items()
        if len(spans) > group_threshold and name not in expand
    }
    # order every row by where it starts (cheap), then build only the rows of the page asked
    # for: a 10k-event run lays out in one pass and renders ROW_PAGE rows
    entries: list[tuple[float, int, Span | str]] = []
    for span in c.order:
        if span.kind == "step" and span.label in folded:
            if by_name[span.label][0] is span:
                entries.append((scale(span.start), span.seq, span.label))
            continue
        if span.kind == "child" and span.child_run_id is not None and span.child_run_id in children:
            span.status = children[span.child_run_id]
        entries.append((scale(span.start), span.seq, span))
    entries.sort(key=lambda e: (e[0], e[1]))
    page = entries[rows_from : None if rows_limit is None else rows_from + rows_limit]
    for _, _, item in page:
        if isinstance(item, str):
            rows.append(_group(item, by_name[item], f"group:{item}", scale, open_end))
        else:
            rows.append(_row(item, scale, open_end if item.end is None else item.end))

    gaps = [
        Gap(
            left=round(scale(lo), 3),
            width=round(scale.gap_width, 3),
            ms=hi - lo,
            label=f"{format_ms(hi - lo)} idle",
        )
        for lo, hi in scale.gaps
    ]
    return Layout(
        rows=rows,
        gaps=gaps,
        ticks=_ticks(scale, total),
        marks=marks,
        total_ms=total,
        compressed=bool(gaps),
        idle_ms=scale.idle,
        start=c.t0,
        end=None if c.run_end is None else c.t0 + timedelta(milliseconds=c.run_end),
        row_count=len(entries),
    )
