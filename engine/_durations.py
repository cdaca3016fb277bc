"""Durations as users write them: seconds, ``timedelta``, or strings like ``"1h30m"``.

``parse_duration`` is the one place a duration is read, so ``sleep("1d")``,
``@step(timeout="30s")``, ``wait_for_event(name, timeout=90)`` and the retry options all accept
the same forms and reject bad input with the same clear message.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["Duration", "parse_duration"]

Duration = float | int | str | timedelta
"""What a duration argument accepts: seconds, a ``timedelta`` or a string such as ``"90s"``."""

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)")
_HELP = (
    'use seconds (30, 1.5), a timedelta, or a string of numbers with units such as "250ms", '
    '"90s", "15m", "1h30m", "1d", "2w"'
)


def parse_duration(value: Duration) -> timedelta:
    """Read a duration; raise ``ValueError`` (``TypeError`` for a wrong type) if it is not one.

    Args:
        value: Seconds as an ``int`` or ``float``, a ``timedelta``, or a string made of
            ``<number><unit>`` parts with units ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``
            (``"1h30m"``, ``"1.5h"``, ``"250ms"``). Negative durations are refused.

    Returns:
        The duration as a ``timedelta``.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(0.25)
    datetime.timedelta(microseconds=250000)
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"a duration cannot be negative, got {value!r}; {_HELP}")
        return value
    if isinstance(value, bool):
        raise TypeError(f"a duration cannot be a bool ({value!r}); {_HELP}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"a duration must be a finite number of seconds >= 0, got {value!r}; {_HELP}"
            )
        return timedelta(seconds=value)
    if isinstance(value, str):
        return _parse_text(value)
    raise TypeError(f"a duration cannot be a {type(value).__name__} ({value!r}); {_HELP}")


def _parse_text(text: str) -> timedelta:
    compact = text.strip().lower()
    if not compact:
        raise ValueError(f"empty duration string; {_HELP}")
    total = 0.0
    pos = 0
    for match in _PART.finditer(compact):
        if compact[pos : match.start()].strip():
            break
        number, unit = match.groups()
        total += float(number) * _UNITS[unit]
        pos = match.end()
    if pos == 0 or compact[pos:].strip():
        bare = compact.replace(".", "", 1).isdigit()
        hint = f' (did you mean "{compact}s"? a string needs a unit)' if bare else ""
        raise ValueError(f"cannot read {text!r} as a duration{hint}; {_HELP}")
    return timedelta(seconds=total)
