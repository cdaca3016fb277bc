"""``worldflow.api`` mirrors the Client's verbs (and the engine's own: ``unstall`` and
``fail``, which need the workflow's code): the same names, the same signatures."""

from __future__ import annotations

import inspect

from worldflow import Client, Engine, api

_NOT_VERBS = {"aclose", "clock", "world"}
_ENGINE_VERBS = {"unstall", "fail"}


def _verbs() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(Client)
        if not name.startswith("_") and name not in _NOT_VERBS and callable(member)
    }


def test_every_client_verb_has_a_module_function() -> None:
    functions = set(api.__all__) - {"get_default_engine", "set_default_engine"}
    assert functions == _verbs() | _ENGINE_VERBS


def test_signatures_are_equal() -> None:
    for name in sorted(_verbs() | _ENGINE_VERBS):
        method = getattr(Engine, name)
        function = getattr(api, name)
        expected = inspect.signature(method)
        expected = expected.replace(parameters=list(expected.parameters.values())[1:])
        assert inspect.signature(function) == expected, name
        assert inspect.iscoroutinefunction(function) == inspect.iscoroutinefunction(method)


def test_the_engine_adds_no_second_implementation_of_a_verb() -> None:
    for name in _verbs():
        assert getattr(Engine, name) is getattr(Client, name), name
