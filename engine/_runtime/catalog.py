"""What an engine tells clients about its workflows (Mastra ``listWorkflows`` / ``details``)."""

from __future__ import annotations

import msgspec

from worldflow._registry import ParameterInfo, WorkflowDefinition

__all__ = ["WorkflowInfo", "workflow_info"]


class WorkflowInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A served workflow, described for listings and the inspector.

    Attributes:
        name: The registered name (what ``start`` and the HTTP APIs take).
        parameters: The body's parameters.
        step_names: The steps the body calls directly (found in its code; best effort).
        doc: The body's docstring, or ``None``.
    """

    name: str
    parameters: tuple[ParameterInfo, ...]
    step_names: list[str]
    doc: str | None = None


def workflow_info(definition: WorkflowDefinition) -> WorkflowInfo:
    """Describe ``definition``."""
    return WorkflowInfo(
        name=definition.name,
        parameters=definition.parameters,
        step_names=definition.step_names,
        doc=definition.doc,
    )
