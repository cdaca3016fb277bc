"""Cron expressions, time zones and the ticks of a schedule (pure; ``croniter`` parses).

A tick is a time the cron expression names in the schedule's time zone; ticks are handled in
UTC everywhere else. :func:`due_ticks` answers "which ticks fell in this interval", which is
all a schedule needs to decide what to start after a timer fires on time, or late after
downtime (the catch-up policy picks among them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from croniter import croniter as Croniter


def _croniter() -> type[Croniter]:
    # Imported on first use: croniter (and dateutil) cost ~30 ms at ``import worldflow``.
    from croniter import croniter

    return croniter


__all__ = ["CatchUp", "CronSchedule", "Overlap", "due_ticks", "next_tick", "pick_ticks"]

CatchUp = Literal["skip", "once", "backfill"]
"""What a schedule does with ticks missed while no engine ran it (or while it was paused):
``skip`` them (only a tick that is on time, within ``grace``, starts a run), run ``once`` for
the latest of them, or ``backfill`` one run per missed tick (oldest first, at most
``max_backfill``)."""

Overlap = Literal["skip", "allow"]
"""What a tick does while the schedule's previous run is still going: ``skip`` (no new run)
or ``allow`` (start another)."""


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """When a workflow runs by itself: a cron expression in a time zone, and the policies.

    Attributes:
        cron: Five-field cron (``"0 9 * * MON-FRI"``), or six with the seconds as the last
            field (croniter's convention: ``"* * * * * */10"`` is every ten seconds).
        timezone: An IANA zone (``"Europe/Berlin"``); ticks follow its daylight saving time.
        catch_up: What to do with missed ticks (:data:`CatchUp`).
        overlap: What to do while the previous run still goes (:data:`Overlap`).
        grace: Seconds late a tick may be and still count as on time (for ``skip``).
        max_backfill: The most runs one catch-up starts (``backfill``).
    """

    cron: str
    timezone: str = "UTC"
    catch_up: CatchUp = "once"
    overlap: Overlap = "skip"
    grace: float = 60.0
    max_backfill: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.cron, str) or not _croniter().is_valid(self.cron):
            raise ValueError(
                f"{self.cron!r} is not a cron expression (five fields like '0 9 * * MON-FRI', "
                "or six with the seconds last)"
            )
        zone(self.timezone)
        if self.catch_up not in ("skip", "once", "backfill"):
            raise ValueError(
                f"catch_up must be 'skip', 'once' or 'backfill', not {self.catch_up!r}"
            )
        if self.overlap not in ("skip", "allow"):
            raise ValueError(f"overlap must be 'skip' or 'allow', not {self.overlap!r}")
        if self.grace < 0 or self.max_backfill < 1:
            raise ValueError("grace must be >= 0 and max_backfill >= 1")


def zone(name: str) -> ZoneInfo:
    """The time zone named ``name``; ``ValueError`` for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{name!r} is not a known time zone (use an IANA name)") from None


def next_tick(schedule: CronSchedule, after: datetime) -> datetime:
    """The first tick strictly after ``after``, in UTC."""
    local = after.astimezone(zone(schedule.timezone))
    nxt: datetime = _croniter()(schedule.cron, local).get_next(datetime)
    return nxt.astimezone(UTC)


def due_ticks(
    schedule: CronSchedule, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Ticks in ``(after, until]``, oldest first; only the newest ``limit`` of them.

    Walks back from ``until``, so a long downtime costs ``limit`` steps, not one per tick.
    """
    local = (until + timedelta(microseconds=1)).astimezone(zone(schedule.timezone))
    it = _croniter()(schedule.cron, local)
    ticks: list[datetime] = []
    while len(ticks) < limit:
        tick: datetime = it.get_prev(datetime).astimezone(UTC)
        if tick <= after:
            break
        ticks.append(tick)
    ticks.reverse()
    return ticks


def pick_ticks(schedule: CronSchedule, due: list[datetime], now: datetime) -> list[datetime]:
    """The due ticks that start a run, by the schedule's catch-up policy."""
    if not due:
        return []
    if schedule.catch_up == "backfill":
        return due[-schedule.max_backfill :]
    latest = due[-1]
    if schedule.catch_up == "once":
        return [latest]
    return [latest] if (now - latest).total_seconds() <= schedule.grace else []
