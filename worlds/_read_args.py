"""The arguments of the read calls every world takes (``limit``, a run-status filter, a
page cursor), checked by one set of rules so each world refuses the same bad values with the
same :class:`~worldflow.InvalidEventError`."""

from __future__ import annotations

from collections.abc import Collection

from worldflow.errors import InvalidEventError
from worldflow.worlds._records import RunStatus

__all__ = ["bad_cursor", "check_limit", "run_statuses"]


def check_limit(limit: int) -> None:
    """Refuse a page size that is not a whole number of at least 1."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidEventError(f"`limit` must be at least 1, got {limit!r}")


def bad_cursor(cursor: str) -> InvalidEventError:
    """The error for a cursor that no page of this world handed out."""
    return InvalidEventError(
        f"invalid cursor {cursor!r}: pass back the `cursor` of the previous page"
    )


def run_statuses(status: RunStatus | Collection[RunStatus] | None) -> frozenset[RunStatus] | None:
    """The statuses a ``list_runs(status=...)`` filter names (``None``: no filter); an unknown
    status is refused naming the known ones."""
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    try:
        return frozenset(RunStatus(s) for s in values)
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise InvalidEventError(f"unknown run status in {values!r}: use {known}") from None
