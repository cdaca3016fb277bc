"""parse_duration: the one reader of durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from worldflow._durations import parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, timedelta(0)),
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(hours=2), timedelta(hours=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1.5)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        (" 7D ", timedelta(days=7)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
    ],
)
def test_reads_durations(value: float | str | timedelta, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("", "empty duration"),
        ("30", 'did you mean "30s"'),
        ("1 fortnight", "cannot read '1 fortnight'"),
        ("h", "cannot read"),
        ("1h-30m", "cannot read"),
        (-1, ">= 0"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (timedelta(seconds=-1), "negative"),
    ],
)
def test_refuses_bad_input_with_a_message_that_teaches(value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert '"1h30m"' in str(info.value)


@pytest.mark.parametrize("value", [True, None, [1], object()])
def test_refuses_wrong_types(value: object) -> None:
    with pytest.raises(TypeError, match="a duration cannot be"):
        parse_duration(value)  # type: ignore[arg-type]
