"""What an engine publishes about its workflows: catalog entries with JSON Schemas.

An entry (:class:`~worldflow.worlds.WorkflowInfo`) is what a client with no workflow code
can learn from the world's ``Catalog``: the name, the parameters, the steps the body calls,
the docstring, and JSON Schemas where the annotations allow (msgspec describes dataclasses,
Structs, TypedDicts, enums, containers and scalars; a parameter without an annotation, or
with a type msgspec cannot describe, has none).
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec

from worldflow._registry import WorkflowDefinition
from worldflow.errors import DiskFullError
from worldflow.worlds import NULL, ParameterInfo, Payload, WorkflowInfo, World
from worldflow.worlds._clock import Clock

__all__ = ["WorkflowInfo", "publish_catalog", "workflow_info"]

log = logging.getLogger("worldflow.engine")

_RETRY_FIRST = 0.05  # seconds before the first new try of a catalog a full disk refused
_RETRY_MAX = 5.0

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


async def publish_catalog(
    world: World,
    entries: Sequence[WorkflowInfo],
    clock: Clock,
    spawn: Callable[[Coroutine[Any, Any, None], str], object],
) -> None:
    """Publish an engine's catalog entries as it starts.

    An engine entered on a full disk starts anyway, as a running one goes on when the disk
    fills (a step's outcome waits for room the same way): the catalog is what a client with
    no workflow code reads, not what drives runs. The refusal is logged (a WARNING naming
    the cause) and a task of the engine (``spawn``) publishes the entries again once there
    is room, each try doubling the wait on the engine's clock, up to a few seconds.
    """
    try:
        await world.publish_workflows(entries)
    except DiskFullError as full:
        log.warning(
            "the workflow catalog (%s) could not be stored (%s); the engine runs, and "
            "publishes it again once the world has room",
            ", ".join(e.name for e in entries),
            full.message,
        )
        spawn(_publish_when_there_is_room(world, entries, clock), "catalog")


async def _publish_when_there_is_room(
    world: World, entries: Sequence[WorkflowInfo], clock: Clock
) -> None:
    delay = _RETRY_FIRST
    while True:
        await clock.sleep(delay)
        try:
            await world.publish_workflows(entries)
        except DiskFullError:
            delay = min(delay * 2, _RETRY_MAX)
            continue
        log.info("the workflow catalog is stored now")
        return
