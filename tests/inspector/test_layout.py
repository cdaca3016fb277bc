"""The timeline layout, from hand-built logs (no world, no engine)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from worldflow.inspector.ui._layout import Row, format_ms, layout_timeline
from worldflow.worlds import (
    ErrorInfo,
    EventRaised,
    HookCreated,
    HookReceived,
    PatchMarked,
    RunCompleted,
    RunCreated,
    RunResumed,
    RunStarted,
    RunSuspended,
    StepCompleted,
    StepCreated,
    StepRetrying,
    StepStarted,
    WaitCompleted,
    WaitCreated,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RAW = msgspec.Raw(b"{}")
ERR = ErrorInfo(name="ValueError", message="card declined")


class Log:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def add(self, cls: type, ms: float, **fields: Any) -> Log:
        seq = len(self.events) + 1
        at = T0 + timedelta(milliseconds=ms)
        self.events.append(cls(run_id="r", seq=seq, created_at=at, **fields))
        return self

    def start(self) -> Log:
        self.add(RunCreated, 0, workflow_name="m:wf", input=RAW)
        return self.add(RunStarted, 0)

    def step(self, sid: str, name: str, ms: float) -> Log:
        return self.add(StepCreated, ms, correlation_id=sid, step_name=name, input=RAW)


def row(layout_rows: list[Row], key: str) -> Row:
    return next(r for r in layout_rows if r.key == key)


def test_retried_step_has_one_segment_per_attempt_and_backoff_between() -> None:
    log = Log().start().step("s1", "shop:charge_card", 5)
    log.add(StepStarted, 10, correlation_id="s1")
    log.add(StepRetrying, 20, correlation_id="s1", error=ERR)
    log.add(StepStarted, 1020, correlation_id="s1")
    log.add(StepRetrying, 1030, correlation_id="s1", error=ERR)
    log.add(StepStarted, 2030, correlation_id="s1")
    log.add(StepCompleted, 2040, correlation_id="s1", result=RAW)
    log.add(RunCompleted, 2041, output=RAW)

    layout = layout_timeline(log.events)
    charge = row(layout.rows, "s1")
    assert [p.kind for p in charge.parts] == [
        "queued",
        "retry",
        "backoff",
        "retry",
        "backoff",
        "ok",
    ]
    assert charge.attempts == 3
    assert charge.status == "completed"
    assert charge.name == "Step charge_card, completed after 3 attempts, 2 s, queued 5 ms"
    assert charge.detail == "ValueError: card declined"
    # the parts tile the bar left to right
    lefts = [p.left for p in charge.parts]
    assert lefts == sorted(lefts)
    assert layout.rows[0].kind == "run"
    assert layout.rows[0].status == "completed"


def test_parallel_steps_overlap() -> None:
    log = Log().start()
    for i, sid in enumerate(("a", "b", "c")):
        log.step(sid, f"m:fetch_{sid}", 1)
        log.add(StepStarted, 2 + i, correlation_id=sid)
    for i, sid in enumerate(("a", "b", "c")):
        log.add(StepCompleted, 50 + 10 * i, correlation_id=sid, result=RAW)
    log.add(RunCompleted, 80, output=RAW)

    rows = layout_timeline(log.events).rows
    boxes = [(row(rows, k).left, row(rows, k).left + row(rows, k).width) for k in "abc"]
    for lo, hi in boxes:
        for lo2, hi2 in boxes:
            assert lo < hi2
            assert lo2 < hi


def test_long_sleep_is_compressed_into_a_labelled_break() -> None:
    day = 86_400_000.0
    log = Log().start()
    log.add(WaitCreated, 1, correlation_id="w", resume_at=T0 + timedelta(days=3))
    log.add(WaitCompleted, 3 * day, correlation_id="w")
    log.step("s", "m:ship", 3 * day + 1)
    log.add(StepStarted, 3 * day + 2, correlation_id="s")
    log.add(StepCompleted, 3 * day + 500, correlation_id="s", result=RAW)
    log.add(RunCompleted, 3 * day + 501, output=RAW)

    compressed = layout_timeline(log.events)
    assert [g.label for g in compressed.gaps] == ["3 d idle"]
    assert row(compressed.rows, "s").width >= 20
    sleep = row(compressed.rows, "w")
    assert sleep.kind == "sleep"
    assert sleep.name.startswith("Sleep sleep, completed, 3 d")
    gap = compressed.gaps[0]
    assert sleep.left <= gap.left
    assert sleep.left + sleep.width >= gap.left + gap.width  # the sleep spans the break

    shown = layout_timeline(log.events, compress=False)
    assert shown.gaps == []
    assert row(shown.rows, "s").width < 1


def test_open_step_and_pending_sleep_run_until_now() -> None:
    log = Log().start().step("s", "m:slow", 0)
    log.add(StepStarted, 10, correlation_id="s")
    log.add(WaitCreated, 10, correlation_id="w", resume_at=T0 + timedelta(seconds=100))
    layout = layout_timeline(log.events, now=T0 + timedelta(seconds=50), compress=False)
    slow = row(layout.rows, "s")
    assert slow.status == "running"
    assert slow.parts[-1].kind == "running"
    assert slow.left + slow.width == pytest.approx(50, abs=0.01)
    sleep = row(layout.rows, "w")
    assert [p.kind for p in sleep.parts] == ["waiting", "planned"]
    assert layout.total_ms == 100_000


def test_repeated_step_folds_into_a_group_row_unless_expanded() -> None:
    log = Log().start()
    for i in range(25):
        log.step(f"f{i}", "m:fetch", i)
        log.add(StepStarted, i + 1, correlation_id=f"f{i}")
        log.add(StepCompleted, i + 2 + i, correlation_id=f"f{i}", result=RAW)
    folded = layout_timeline(log.events)
    groups = [r for r in folded.rows if r.kind == "group"]
    assert len(groups) == 1
    assert groups[0].label == "fetch ×25"  # noqa: RUF001
    assert groups[0].count == 25
    assert "25 completed" in groups[0].name
    assert len(folded.rows) == 2

    expanded = layout_timeline(log.events, expand=frozenset({"fetch"}))
    assert len([r for r in expanded.rows if r.kind == "step"]) == 25


def test_child_run_is_one_row_linking_the_child() -> None:
    payload = msgspec.Raw(b'{"workflow_name":"m:pay","run_id":"r-s1","input":{}}')
    log = Log().start()
    log.add(HookCreated, 1, correlation_id="h", token="worldflow:child:r-s1")
    log.add(StepCreated, 1, correlation_id="s1", step_name="worldflow.start_child", input=payload)
    log.add(StepStarted, 2, correlation_id="s1")
    log.add(StepCompleted, 3, correlation_id="s1", result=RAW)
    log.add(HookReceived, 40, correlation_id="h", payload=RAW)
    layout = layout_timeline(log.events, child_status={"r-s1": "completed"})
    kinds = [r.kind for r in layout.rows]
    assert kinds == ["run", "child"]  # the child's hook is folded into its row
    child = layout.rows[1]
    assert child.child_run_id == "r-s1"
    assert child.label == "child pay"
    assert child.status == "completed"


def test_hooks_events_and_suspension_are_marks() -> None:
    log = Log().start()
    log.add(HookCreated, 1, correlation_id="h", token="approve:1")
    log.add(RunSuspended, 5, reason="maintenance")
    log.add(RunResumed, 9)
    log.add(EventRaised, 10, name="go")
    log.add(HookReceived, 20, correlation_id="h", payload=RAW)
    layout = layout_timeline(log.events)
    hook = row(layout.rows, "h")
    assert hook.label == "hook approve:1"
    assert [m.kind for m in hook.marks] == ["received"]
    assert [p.kind for p in layout.rows[0].parts] == ["running", "suspended", "running"]
    titles = [m.title for m in layout.marks]
    assert "run suspended: maintenance" in titles
    assert "event 'go' raised" in titles


def test_versioning_marks_are_on_the_run_row() -> None:
    log = Log().start().step("s1", "m:charge", 2)
    log.add(PatchMarked, 4, name="charge-twice")
    log.add(RunCompleted, 8, output=RAW)
    layout = layout_timeline(log.events)
    (mark,) = [m for m in layout.rows[0].marks if m.kind == "patch"]
    assert mark.seq == 4
    assert mark.title == "patched('charge-twice'): the new code from here on"
    assert 0 < mark.at < 100


def test_empty_log() -> None:
    layout = layout_timeline([])
    assert layout.rows == []
    assert layout.start is None


@pytest.mark.parametrize(
    ("ms", "text"),
    [(120, "120 ms"), (2400, "2.4 s"), (2000, "2 s"), (180_000, "3 min"), (259_200_000, "3 d")],
)
def test_format_ms(ms: float, text: str) -> None:
    assert format_ms(ms) == text


def test_axis_labels_do_not_crowd() -> None:
    log = Log().start()
    log.add(WaitCreated, 1, correlation_id="w", resume_at=T0 + timedelta(hours=1))
    log.add(WaitCompleted, 3_600_000, correlation_id="w")
    log.add(RunCompleted, 3_600_050, output=RAW)
    layout = layout_timeline(log.events)
    labelled = [t.left for t in layout.ticks if t.label]
    assert labelled[0] == 0
    assert all(b - a >= 8 for a, b in itertools.pairwise(labelled))
    assert all(left <= 92 for left in labelled)


def test_rows_are_built_one_page_at_a_time() -> None:
    log = Log().start()
    for i in range(30):
        log.step(f"s{i:02}", f"m:step_{i}", i)
    whole = layout_timeline(log.events)
    assert whole.row_count == 30
    page = layout_timeline(log.events, rows_from=10, rows_limit=5)
    assert page.row_count == 30
    assert [r.key for r in page.rows] == ["run", *(f"s{i:02}" for i in range(10, 15))]
    assert page.rows[1:] == whole.rows[11:16]
