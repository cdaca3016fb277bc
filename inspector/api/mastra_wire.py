"""The Mastra workflows API's request and response shapes (``@mastra/client-js`` 1.47).

msgspec types, shared by the handlers (which decode and encode them) and ``/openapi.json``.
Field names are Mastra's (camelCase). Run results and run states are open JSON objects: their
keys are step ids chosen by the workflow, so they are typed as ``dict[str, Any]``.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "CreateRunBody",
    "CreateRunQuery",
    "MastraError",
    "MastraIssue",
    "Message",
    "ObserveQuery",
    "ResumeBody",
    "RunById",
    "RunIdQuery",
    "RunIdResponse",
    "RunsList",
    "RunsQuery",
    "StartBody",
]


class MastraIssue(msgspec.Struct, frozen=True):
    """One validation problem: the field at fault and what is wrong with it."""

    field: str
    message: str


class MastraError(msgspec.Struct, frozen=True, omit_defaults=True):
    """Mastra's error body: ``{"error": message}``, with ``issues`` for a validation error."""

    error: str
    issues: list[MastraIssue] | None = None


class Message(msgspec.Struct, frozen=True):
    """A plain acknowledgement: ``{"message": "Workflow run started"}``."""

    message: str


class RunIdResponse(msgspec.Struct, frozen=True):
    """``{"runId": ...}``: the run a create-run or resume-no-wait is about."""

    runId: str  # noqa: N815  (wire name)


class RunIdQuery(msgspec.Struct, frozen=True):
    """``?runId=`` (required)."""

    runId: str  # noqa: N815


class CreateRunQuery(msgspec.Struct, frozen=True):
    """``?runId=`` (optional: a fresh id is made without it)."""

    runId: str | None = None  # noqa: N815


class ObserveQuery(msgspec.Struct, frozen=True):
    """``?runId=&offset=``: replay a run's stream records from index ``offset``."""

    runId: str  # noqa: N815
    offset: int = 0


class RunsQuery(msgspec.Struct, frozen=True):
    """Filters and paging of ``GET /workflows/:id/runs`` (``page`` counts from 0)."""

    fromDate: str | None = None  # noqa: N815
    toDate: str | None = None  # noqa: N815
    page: int | None = None
    perPage: int | None = None  # noqa: N815
    limit: str | None = None
    offset: int | None = None
    resourceId: str | None = None  # noqa: N815
    status: str | None = None
    requestContext: str | None = None  # noqa: N815


class RunByIdQuery(msgspec.Struct, frozen=True):
    """``?fields=a,b&withNestedWorkflows=``: which parts of the run state to return."""

    fields: str | None = None
    withNestedWorkflows: str | None = None  # noqa: N815
    requestContext: str | None = None  # noqa: N815


class CreateRunBody(msgspec.Struct, frozen=True):
    """The body of ``create-run``."""

    resourceId: str | None = None  # noqa: N815
    disableScorers: bool | None = None  # noqa: N815


class StartBody(msgspec.Struct, frozen=True):
    """The body of ``start``, ``start-async`` and ``stream``.

    ``inputData`` binds to the workflow's parameters by name (a one-parameter workflow may take
    the object itself); ``initialState`` is the workflow state's starting value.
    """

    inputData: Any = None  # noqa: N815
    initialState: Any = None  # noqa: N815
    resourceId: str | None = None  # noqa: N815
    requestContext: Any = None  # noqa: N815
    tracingOptions: Any = None  # noqa: N815
    perStep: bool | None = None  # noqa: N815
    closeOnSuspend: bool = True  # noqa: N815


class ResumeBody(msgspec.Struct, frozen=True):
    """The body of the resume routes: which suspended step (an id, or a path of ids into
    nested workflows; default: the suspended one) and the data ``get_resume_data()`` returns.
    """

    step: str | list[str] | None = None
    resumeData: Any = None  # noqa: N815
    requestContext: Any = None  # noqa: N815
    tracingOptions: Any = None  # noqa: N815
    perStep: bool | None = None  # noqa: N815
    forEachIndex: int | None = None  # noqa: N815
    closeOnSuspend: bool = True  # noqa: N815


class RunsList(msgspec.Struct, frozen=True):
    """``GET /workflows/:id/runs``: one page of runs and the number of all that match."""

    runs: list[dict[str, Any]]
    total: int


RunById = dict[str, Any]
"""A run's state (``runById``), or a run result (``start-async``): open JSON objects."""
