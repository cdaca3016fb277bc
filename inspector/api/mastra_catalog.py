"""Which worldflow workflow a Mastra workflow id names, what its input is, and how Mastra
describes it (``listWorkflows`` / ``details``).

A Mastra id is a workflow's registered name, its short name (the part after ``module:``, when
no other workflow shares it) or an alias given to the app. ``inputData`` binds to the
workflow's parameters by name; a workflow with one parameter may take the object itself.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worldflow.inspector.api.mastra_records import short_name

__all__ = ["CatalogEntry", "InputError", "MastraCatalog", "bind_input", "describe"]

_VARIADIC = ("var_positional", "var_keyword")


class ParameterLike(Protocol):
    """A workflow parameter as the catalog describes it."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def annotation(self) -> str | None: ...

    @property
    def required(self) -> bool: ...


class CatalogEntry(Protocol):
    """A workflow as the catalog describes it (``worldflow.WorkflowInfo`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def parameters(self) -> Sequence[ParameterLike]: ...

    @property
    def step_names(self) -> Sequence[str]: ...

    @property
    def doc(self) -> str | None: ...


class InputError(ValueError):
    """``inputData`` does not fit the workflow: one line per field at fault."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "".join(f"\n- {field}: {message}" for field, message in problems)
        super().__init__(f"Invalid input data: {lines}")


# -- input ----------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "number"),
    "float": ((int, float), "number"),
    "str": ((str,), "string"),
    "bool": ((bool,), "boolean"),
    "dict": ((dict,), "object"),
    "list": ((list,), "array"),
    "tuple": ((list,), "array"),
}


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _simple_type(annotation: str | None) -> tuple[tuple[type, ...], str, bool] | None:
    """``(python types, JSON type name, may be None)`` for the plain annotations, else None."""
    if not annotation:
        return None
    parts = [p.strip() for p in annotation.split("|")]
    nullable = "None" in parts or "NoneType" in parts
    rest = [p for p in parts if p not in ("None", "NoneType")]
    if len(rest) != 1:
        return None
    base = rest[0].split("[", 1)[0].removeprefix("builtins.")
    known = _JSON_TYPES.get(base)
    if known is None:
        return None
    return known[0], known[1], nullable


def _check(param: ParameterLike, value: Any) -> str | None:
    simple = _simple_type(param.annotation)
    if simple is None:
        return None
    types, expected, nullable = simple
    if value is None and nullable:
        return None
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return None
    return f"Invalid input: expected {expected}, received {_json_name(value)}"


def bind_input(entry: CatalogEntry, input_data: Any) -> dict[str, Any]:
    """The keyword arguments ``input_data`` stands for; :class:`InputError` if it does not fit.

    An object binds by parameter name. A workflow with exactly one (non-variadic) parameter
    also takes any other value, or an object that is not keyed by its parameter, as that
    parameter's value.
    """
    params = [p for p in entry.parameters if p.kind not in _VARIADIC]
    takes_extra = any(p.kind == "var_keyword" for p in entry.parameters)
    names = {p.name for p in params}
    if isinstance(input_data, dict) and (
        set(input_data) <= names or takes_extra or len(params) != 1
    ):
        kwargs = dict(input_data)
    elif input_data is None and not any(p.required for p in params):
        kwargs = {}
    elif len(params) == 1:
        kwargs = {params[0].name: input_data}
    else:
        raise InputError([("inputData", f"expected an object, received {_json_name(input_data)}")])
    problems: list[tuple[str, str]] = []
    for p in params:
        if p.name not in kwargs:
            if p.required:
                problems.append((p.name, "Invalid input: expected a value, received undefined"))
            continue
        if p.kind == "positional_only":
            problems.append((p.name, "a positional-only parameter cannot be given by name"))
            continue
        message = _check(p, kwargs[p.name])
        if message:
            problems.append((p.name, message))
    if not takes_extra:
        problems.extend(
            (key, "Unrecognized key: not a parameter of this workflow")
            for key in kwargs
            if key not in names
        )
    if problems:
        raise InputError(problems)
    return kwargs


# -- description ----------------------------------------------------------------------------


def _schema(entry: CatalogEntry) -> dict[str, Any]:
    given = getattr(entry, "input_schema", None)
    if isinstance(given, dict):
        return given
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in entry.parameters:
        if p.kind in _VARIADIC:
            continue
        own = getattr(p, "json_schema", None)
        if isinstance(own, dict):
            properties[p.name] = own
        else:
            simple = _simple_type(p.annotation)
            properties[p.name] = {"type": simple[1]} if simple else {}
        if p.required:
            required.append(p.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": any(p.kind == "var_keyword" for p in entry.parameters),
        "$schema": "http://json-schema.org/draft-07/schema#",
    }


def _wrapped(schema: dict[str, Any]) -> str:
    """Mastra's form: a string holding superjson's ``{"json": <JSON Schema>}``."""
    return json.dumps({"json": schema}, separators=(",", ":"))


def describe(entry: CatalogEntry, *, partial: bool = False) -> dict[str, Any]:
    """The workflow as Mastra's ``WorkflowInfo`` (``partial``: without steps and schemas)."""
    steps = [short_name(s) for s in entry.step_names]
    doc = entry.doc or None
    description = inspect.cleandoc(doc).split("\n\n")[0] if doc else None
    out: dict[str, Any] = {"name": entry.name}
    if description:
        out["description"] = description
    out["origin"] = "code"
    graph = [{"type": "step", "step": {"id": s, "canSuspend": True}} for s in steps]
    if partial:
        out.update(steps={}, allSteps={}, stepGraph=graph, stepCount=len(steps))
        return out
    any_schema = _wrapped({"$schema": "http://json-schema.org/draft-07/schema#"})
    step_info = {s: {"id": s, "inputSchema": any_schema, "outputSchema": any_schema} for s in steps}
    out.update(
        steps=step_info,
        allSteps={s: {**info, "isWorkflow": False} for s, info in step_info.items()},
        stepGraph=graph,
        inputSchema=_wrapped(_schema(entry)),
        outputSchema=any_schema,
        options={"validateInputs": True, "emitStepEvents": True},
        isProcessorWorkflow=False,
    )
    return out


# -- ids ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MastraCatalog:
    """The workflows by Mastra id: registered name, unique short name, or a given alias."""

    entries: Mapping[str, CatalogEntry]
    """Registered name → entry."""
    keys: Mapping[str, str]
    """Mastra key (what ``listWorkflows`` is keyed by) → registered name."""

    @classmethod
    def build(
        cls, entries: Sequence[CatalogEntry], aliases: Mapping[str, str] | None = None
    ) -> MastraCatalog:
        """Index ``entries``; ``aliases`` maps extra Mastra ids to registered names."""
        # The engine's own workflows (``worldflow.schedule``) are not the user's to call.
        by_name = {e.name: e for e in entries if not e.name.startswith("worldflow.")}
        shorts: dict[str, list[str]] = {}
        for name in by_name:
            shorts.setdefault(short_name(name), []).append(name)
        keys: dict[str, str] = {}
        for name in sorted(by_name):
            short = short_name(name)
            keys[short if len(shorts[short]) == 1 else name] = name
        keys.update({a: n for a, n in (aliases or {}).items() if n in by_name})
        return cls(by_name, keys)

    def key_of(self, name: str) -> str:
        """The Mastra key of a registered name."""
        for key, target in self.keys.items():
            if target == name:
                return key
        return name

    def find(self, workflow_id: str) -> CatalogEntry | None:
        """The entry a Mastra id names (key, alias or registered name), or ``None``."""
        name = self.keys.get(workflow_id, workflow_id)
        return self.entries.get(name)
