"""The runs list's filters: read from the URL's query, checked, and written back into links.

Every filter lives in the URL (``?status=failed&workflow=shop:order&meta=tenant=acme``), so a
view can be bookmarked, shared and reloaded. A value the list cannot apply is refused with a
message naming the parameter, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

import msgspec
from multidict import MultiMapping

from worldflow.worlds import RunStatus

__all__ = ["PAGE_SIZES", "FilterError", "RunFilter", "parse_filter"]

PAGE_SIZES = (20, 50, 100, 200, 500)
DEFAULT_PAGE = 50


class FilterError(ValueError):
    """A query parameter the runs list cannot apply; the message names it."""


class RunFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What the runs list shows; :meth:`query` writes it back into a URL."""

    workflow: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    resource_id: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str | None = None
    forked_from: str | None = None
    limit: int = DEFAULT_PAGE
    cursor: str | None = None

    def query(self, **changes: object) -> str:
        """This filter as a query string (``?…``), with ``changes`` applied.

        ``cursor`` is dropped unless given, since a changed filter starts at the newest run.
        """
        f = msgspec.structs.replace(self, cursor=None)
        if changes:
            f = msgspec.structs.replace(f, **changes)
        pairs: list[tuple[str, str]] = []
        if f.search:
            pairs.append(("q", f.search))
        if f.workflow:
            pairs.append(("workflow", f.workflow))
        pairs.extend(("status", s.value) for s in f.statuses)
        if f.resource_id:
            pairs.append(("resource", f.resource_id))
        pairs.extend(("meta", f"{k}={v}") for k, v in f.metadata)
        if f.created_after:
            pairs.append(("after", f.created_after.isoformat()))
        if f.created_before:
            pairs.append(("before", f.created_before.isoformat()))
        if f.forked_from:
            pairs.append(("forked_from", f.forked_from))
        if f.limit != DEFAULT_PAGE:
            pairs.append(("limit", str(f.limit)))
        if f.cursor:
            pairs.append(("cursor", f.cursor))
        return "?" + urlencode(pairs) if pairs else ""

    @property
    def is_filtered(self) -> bool:
        """Whether anything narrows the list (the page says "no runs match" vs "no runs")."""
        return bool(
            self.workflow
            or self.statuses
            or self.resource_id
            or self.metadata
            or self.created_after
            or self.created_before
            or self.search
            or self.forked_from
        )

    def world_args(self) -> dict[str, object]:
        """The keyword arguments of ``World.list_runs`` for this filter (without paging)."""
        return {
            "workflow_name": self.workflow,
            "status": list(self.statuses) or None,
            "resource_id": self.resource_id,
            "metadata": dict(self.metadata) or None,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "forked_from": self.forked_from,
        }


def _time(name: str, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(
            f"`{name}` must be a date or time like 2026-01-31 or 2026-01-31T08:00, got {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _one(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return value.strip() or None if value is not None else None


def parse_filter(query: MultiMapping[str]) -> RunFilter:
    """Read a :class:`RunFilter` from a request's query; :class:`FilterError` names a bad one."""
    statuses: list[RunStatus] = []
    for raw in query.getall("status", []):
        for part in raw.split(","):
            if not part.strip():
                continue
            try:
                status = RunStatus(part.strip())
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise FilterError(f"`status` must be one of {known}; got {part!r}") from None
            if status not in statuses:
                statuses.append(status)
    metadata: list[tuple[str, str]] = []
    for raw in query.getall("meta", []):
        if not raw.strip():
            continue
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise FilterError(f"`meta` takes key=value, got {raw!r}")
        metadata.append((key.strip(), value.strip()))
    limit_text = _one(query, "limit")
    limit = DEFAULT_PAGE
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except ValueError:
            raise FilterError(f"`limit` must be a number, got {limit_text!r}") from None
        if not 1 <= limit <= max(PAGE_SIZES):
            raise FilterError(f"`limit` must be between 1 and {max(PAGE_SIZES)}, got {limit}")
    after, before = _one(query, "after"), _one(query, "before")
    return RunFilter(
        workflow=_one(query, "workflow"),
        statuses=tuple(statuses),
        resource_id=_one(query, "resource"),
        metadata=tuple(metadata),
        created_after=_time("after", after) if after else None,
        created_before=_time("before", before) if before else None,
        search=_one(query, "q"),
        forked_from=_one(query, "forked_from"),
        limit=limit,
        cursor=_one(query, "cursor"),
    )
