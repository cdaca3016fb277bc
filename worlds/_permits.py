"""Flow-control permits held in memory (the ``FlowControl`` role of the memory and file worlds).

One :class:`PermitTable` per world: for each key, the granted permits (in grant order) and
the line of waiters. Every ask first drops what no longer counts (see ``FlowControl``): rate
grants past their period, concurrency permits of engines that are not live or of runs that
ended, waiters that stopped asking. The table is told how to judge an engine and a run, so it
holds no world of its own; the PostgreSQL world does the same in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from worldflow.errors import InvalidEventError
from worldflow.worlds._records import Permit, PermitGrant

__all__ = [
    "MAX_PERMIT_KEY",
    "PermitTable",
    "check_permit_arguments",
    "check_permit_key",
    "line_order",
]

MAX_PERMIT_KEY = 512
_INT32 = 2**31
_SWEEP_EVERY = 1024  # asks between sweeps of every key


def check_permit_key(key: object, holder: object | None = None) -> None:
    """Refuse a bad ``key`` (or ``holder``) with :class:`InvalidEventError` naming it."""
    for name, value in (("key", key), ("holder", holder)):
        if value is None and name == "holder":
            continue
        if not isinstance(value, str) or not 0 < len(value) <= MAX_PERMIT_KEY:
            raise InvalidEventError(
                f"permits: `{name}` must be a str of 1 to {MAX_PERMIT_KEY} characters, "
                f"got {value!r:.60}"
            )


def check_permit_arguments(
    key: object, holder: object, limit: object, period: object, priority: object
) -> None:
    """Refuse a bad ask with :class:`InvalidEventError` naming the argument."""
    check_permit_key(key, holder)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidEventError(f"acquire_permit: `limit` must be an int >= 1, got {limit!r}")
    if period is not None and (
        isinstance(period, bool) or not isinstance(period, int | float) or not period > 0
    ):
        raise InvalidEventError(
            f"acquire_permit: `period` must be None or seconds > 0, got {period!r}"
        )
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (-_INT32 <= priority < _INT32)
    ):
        raise InvalidEventError(
            f"acquire_permit: `priority` must be a 32-bit int, got {priority!r:.60}"
        )


def line_order(permit: Permit) -> tuple[int, datetime, str]:
    """The order permits go to waiters: higher priority first, then first asked."""
    return (-permit.priority, permit.since, permit.holder)


class _Key:
    __slots__ = ("held", "waiting")

    def __init__(self) -> None:
        self.held: dict[str, Permit] = {}
        self.waiting: dict[str, Permit] = {}


class PermitTable:
    """The permits of one world.

    Args:
        now: The world's clock.
        engine_live: Whether an engine id is live (``Ownership``).
        run_active: Whether a run exists and is not terminal.
        wait_ttl: Seconds a waiter keeps its place without asking again.
    """

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        engine_live: Callable[[str], bool],
        run_active: Callable[[str], bool],
        wait_ttl: float,
    ) -> None:
        self._now = now
        self._engine_live = engine_live
        self._run_active = run_active
        self._wait_ttl = timedelta(seconds=wait_ttl)
        self._keys: dict[str, _Key] = {}
        self._asks = 0

    def _sweep(self, now: datetime) -> None:
        """Prune every key now and then, so keys nobody asks for again (a customer's, once
        their runs are done) do not pile up."""
        for key, entry in list(self._keys.items()):
            self._prune(entry, now)
            if not entry.held and not entry.waiting:
                del self._keys[key]

    def _prune(self, entry: _Key, now: datetime) -> None:
        for holder, permit in list(entry.held.items()):
            if permit.expires_at is not None:
                if permit.expires_at <= now:
                    del entry.held[holder]
            elif not (self._engine_live(permit.engine_id) and self._run_active(permit.run_id)):
                del entry.held[holder]
        stale = now - self._wait_ttl
        for holder, permit in list(entry.waiting.items()):
            if (
                permit.asked_at < stale
                or not self._engine_live(permit.engine_id)
                or not self._run_active(permit.run_id)
            ):
                del entry.waiting[holder]

    def acquire(
        self,
        key: str,
        holder: str,
        *,
        run_id: str,
        engine_id: str,
        limit: int,
        period: float | None,
        priority: int,
    ) -> PermitGrant:
        """Grant or queue; see ``FlowControl`` (the caller checked the run and arguments)."""
        now = self._now()
        self._asks += 1
        if self._asks % _SWEEP_EVERY == 0:
            self._sweep(now)
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key()
        self._prune(entry, now)
        held = entry.held.get(holder)
        if held is not None:
            if held.engine_id != engine_id:
                held = msgspec.structs.replace(held, engine_id=engine_id, asked_at=now)
                entry.held[holder] = held
            return PermitGrant(granted=True, held=len(entry.held))
        before = entry.waiting.get(holder)
        asking = Permit(
            key=key,
            holder=holder,
            run_id=run_id,
            engine_id=engine_id,
            granted=False,
            priority=priority,
            since=now if before is None else before.since,
            asked_at=now,
        )
        entry.waiting[holder] = asking
        ahead = sum(1 for p in entry.waiting.values() if line_order(p) < line_order(asking))
        free = limit - len(entry.held)
        if ahead < free:
            del entry.waiting[holder]
            entry.held[holder] = msgspec.structs.replace(
                asking,
                granted=True,
                since=now,
                expires_at=None if period is None else now + timedelta(seconds=period),
            )
            return PermitGrant(granted=True, held=len(entry.held))
        retry_after = None
        if period is not None and entry.held:
            expiries = [p.expires_at for p in entry.held.values() if p.expires_at is not None]
            if expiries:
                retry_after = max(0.0, (min(expiries) - now).total_seconds())
        return PermitGrant(
            granted=False, held=len(entry.held), ahead=ahead, retry_after=retry_after
        )

    def release(self, key: str, holder: str) -> bool:
        """Drop ``holder``'s concurrency permit or its place in line; see ``FlowControl``."""
        entry = self._keys.get(key)
        if entry is None:
            return False
        removed = entry.waiting.pop(holder, None) is not None
        permit = entry.held.get(holder)
        if permit is not None and permit.expires_at is None:
            del entry.held[holder]
            removed = True
        if not entry.held and not entry.waiting:
            del self._keys[key]
        return removed

    def list(self, key: str) -> list[Permit]:
        """Granted permits in grant order, then the line in order."""
        entry = self._keys.get(key)
        if entry is None:
            return []
        self._prune(entry, self._now())
        if not entry.held and not entry.waiting:
            del self._keys[key]
            return []
        return [*entry.held.values(), *sorted(entry.waiting.values(), key=line_order)]
