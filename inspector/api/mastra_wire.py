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

    runId: str


class RunIdQuery(msgspec.Struct, frozen=True):
    """``?runId=`` (required)."""

    runId: str


class CreateRunQuery(msgspec.Struct, frozen=True):
    """``?runId=`` (optional: a fresh id is made without it)."""

    runId: str | None = None


class ObserveQuery(msgspec.Struct, frozen=True):
    """``?runId=&offset=``: replay a run's stream records from index ``offset``."""

    runId: str
    offset: int = 0


class RunsQuery(msgspec.Struct, frozen=True):
    """Filters and paging of ``GET /workflows/:id/runs`` (``page`` counts from 0)."""

    fromDate: str | None = None
    toDate: str | None = None
    page: int | None = None
    perPage: int | None = None
    limit: str | None = None
    offset: int | None = None
    resourceId: str | None = None
    status: str | None = None
    requestContext: str | None = None


class RunByIdQuery(msgspec.Struct, frozen=True):
    """``?fields=a,b&withNestedWorkflows=``: which parts of the run state to return."""

    fields: str | None = None
    withNestedWorkflows: str | None = None
    requestContext: str | None = None


class CreateRunBody(msgspec.Struct, frozen=True):
    """The body of ``create-run``."""

    resourceId: str | None = None
    disableScorers: bool | None = None


class StartBody(msgspec.Struct, frozen=True):
    """The body of ``start``, ``start-async`` and ``stream``.

    ``inputData`` binds to the workflow's parameters by name (a one-parameter workflow may take
    the object itself); ``initialState`` is the workflow state's starting value.
    """

    inputData: Any = None
    initialState: Any = None
    resourceId: str | None = None
    requestContext: Any = None
    tracingOptions: Any = None
    perStep: bool | None = None
    closeOnSuspend: bool = True


class ResumeBody(msgspec.Struct, frozen=True):
    """The body of the resume routes: which suspended step (an id, or a path of ids into
    nested workflows; default: the suspended one) and the data ``get_resume_data()`` returns.
    """

    step: str | list[str] | None = None
    resumeData: Any = None
    requestContext: Any = None
    tracingOptions: Any = None
    perStep: bool | None = None
    forEachIndex: int | None = None
    closeOnSuspend: bool = True


class RunsList(msgspec.Struct, frozen=True):
    """``GET /workflows/:id/runs``: one page of runs and the number of all that match."""

    runs: list[dict[str, Any]]
    total: int


RunById = dict[str, Any]
"""A run's state (``runById``), or a run result (``start-async``): open JSON objects."""
