"""What an engine publishes about its workflows: catalog entries with JSON Schemas.

An entry (:class:`~worldflow.worlds.WorkflowInfo`) is what a client with no workflow code
can learn from the world's ``Catalog``: the name, the parameters, the steps the body calls,
the docstring, and JSON Schemas where the annotations allow (msgspec describes dataclasses,
Structs, TypedDicts, enums, containers and scalars; a parameter without an annotation, or
with a type msgspec cannot describe, has none).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import msgspec

from worldflow._registry import WorkflowDefinition
from worldflow.worlds import NULL, ParameterInfo, Payload, WorkflowInfo

__all__ = ["WorkflowInfo", "workflow_info"]

_NAMED = ("positional_only", "positional_or_keyword", "keyword_only")


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation naming something not importable here: no schemas
        return {}


def _schema(hint: Any) -> dict[str, Any] | None:
    try:
        return msgspec.json.schema(hint)
    except Exception:  # a type msgspec cannot describe
        return None


def workflow_info(definition: WorkflowDefinition) -> WorkflowInfo:
    """Describe ``definition`` as a catalog entry."""
    hints = _hints(definition.fn)
    parameters: list[ParameterInfo] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    complete = True
    for param in definition.parameters:
        hint = hints.get(param.name, inspect.Parameter.empty)
        schema = None if hint is inspect.Parameter.empty else _schema(hint)
        encoded: Payload = NULL if schema is None else msgspec.Raw(msgspec.json.encode(schema))
        parameters.append(msgspec.structs.replace(param, json_schema=encoded))
        if schema is None or param.kind not in _NAMED:
            complete = False
            continue
        properties[param.name] = schema
        if param.required:
            required.append(param.name)
    input_schema: Payload = NULL
    if complete:
        document = {"type": "object", "properties": properties, "required": required}
        input_schema = msgspec.Raw(msgspec.json.encode(document))
    return WorkflowInfo(
        name=definition.name,
        parameters=tuple(parameters),
        step_names=definition.step_names,
        doc=definition.doc,
        input_schema=input_schema,
    )
