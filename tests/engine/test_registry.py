"""@workflow / @step: names, options, signatures for type checkers, definitions, the registry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

import pytest

from worldflow import (
    Backoff,
    Concurrency,
    ConfigurationError,
    StepNotRegisteredError,
    WebhookRequest,
    WorkflowFunction,
    WorkflowNotRegisteredError,
    create_hook,
    create_webhook,
    step,
    workflow,
)
from worldflow._registry import Registry


@step
async def charge(order_id: str, cents: int) -> str:
    """Charge the card."""
    return f"{order_id}:{cents}"


@step(name="tests.refund", max_retries=5, backoff="2s", timeout="30s", concurrency=2)
def refund(order_id: str, *, cents: int = 0) -> bool:
    return cents >= 0


@workflow
async def checkout(order_id: str, cents: int = 1999, *extra: str, **tags: str) -> str:
    """Check an order out."""
    receipt = await charge(order_id, cents)
    await refund(order_id, cents=1)
    return receipt


@workflow(name="renamed-flow")
async def named() -> None:
    return None


async def _typed_uses() -> None:
    # Checked by mypy (tools/typecheck.sh): decorated functions keep their signatures.
    assert_type(await charge("o-1", 1999), str)
    assert_type(await refund("o-1", cents=2), bool)
    assert_type(await checkout("o-1"), str)
    assert_type(checkout.definition.name, str)
    webhook = create_webhook()
    assert_type(await webhook, WebhookRequest)
    assert_type(await create_hook(), Any)


def test_default_names_are_module_and_qualname() -> None:
    assert charge.name == "tests.engine.test_registry:charge"
    assert checkout.name == "tests.engine.test_registry:checkout"
    assert named.name == "renamed-flow"
    assert refund.name == "tests.refund"
    assert charge.__name__ == "charge"
    assert charge.__doc__ == "Charge the card."
    assert isinstance(checkout, WorkflowFunction)
    assert repr(charge) == "<step tests.engine.test_registry:charge>"


def test_step_options() -> None:
    default = charge.definition.options
    assert default.max_retries == 3
    assert default.timeout is None
    assert default.concurrency is None
    assert default.backoff == Backoff()
    options = refund.definition.options
    assert options.max_retries == 5
    assert options.timeout == timedelta(seconds=30)
    assert options.concurrency == Concurrency(2)
    assert refund.definition.limits is not None
    assert options.backoff.delay(1) == options.backoff.delay(7) == timedelta(seconds=2)
    assert refund.definition.is_async is False
    assert charge.definition.is_async is True


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=timedelta(seconds=1), factor=2, maximum=timedelta(seconds=5))
    assert [backoff.delay(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert Backoff().delay(1000) == Backoff().maximum
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)


@pytest.mark.parametrize(
    ("options", "error", "needle"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": True}, ValueError, "max_retries"),
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": "soon"}, ValueError, "cannot read 'soon'"),
        ({"backoff": "x"}, ValueError, "cannot read"),
        ({"name": ""}, ValueError, "non-empty"),
        ({"name": "worldflow.mine"}, ValueError, "reserved"),
    ],
)
def test_bad_step_options_are_refused(options: dict[str, object], error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        step(**options)(lambda: None)  # type: ignore[call-overload]


def test_what_cannot_be_decorated() -> None:
    def plain() -> None: ...

    async def agen() -> object:
        yield 1

    with pytest.raises(TypeError, match="async def"):
        workflow(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        step(agen)
    with pytest.raises(TypeError, match="already decorated"):
        step(charge)
    with pytest.raises(TypeError, match="not"):
        step(int)


def test_definitions_describe_the_function() -> None:
    definition = checkout.definition
    assert definition.doc == "Check an order out."
    params = {p.name: p for p in definition.parameters}
    assert params["order_id"].required
    assert params["order_id"].annotation == "str"
    assert params["cents"].default == "1999"
    assert not params["cents"].required
    assert params["extra"].kind == "var_positional"
    assert params["tags"].kind == "var_keyword"
    assert definition.step_names == ["tests.engine.test_registry:charge", "tests.refund"]


def test_inputs_are_bound_arguments() -> None:
    definition = checkout.definition
    a = definition.encode_input("o-1", 5)
    b = definition.encode_input(cents=5, order_id="o-1")
    assert bytes(a) == bytes(b) == b'{"order_id":"o-1","cents":5}'
    full = definition.encode_input("o-1", 5, "x", "y", b="2", a="1")
    assert bytes(full) == (
        b'{"order_id":"o-1","cents":5,"extra":["x","y"],"tags":{"a":"1","b":"2"}}'
    )
    assert definition.decode_input(full) == (("o-1", 5, "x", "y"), {"a": "1", "b": "2"})
    assert definition.decode_input(a) == (("o-1", 5), {})
    with pytest.raises(TypeError, match="missing a required argument"):
        definition.encode_input()
    with pytest.raises(TypeError, match="no longer takes"):
        definition.decode_input(b'{"order_id":"o","gone":1}')
    kw = refund.definition
    assert kw.decode_input(kw.encode_input("o", cents=3)) == (("o",), {"cents": 3})


def test_plain_signatures_bind_the_same_on_the_fast_path() -> None:
    definition = charge.definition
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = [
        (("o", 5), {}),
        (("o",), {"cents": 5}),
        ((), {"cents": 5, "order_id": "o"}),
    ]
    encoded = {bytes(definition.encode_input(*args, **kwargs)) for args, kwargs in calls}
    assert encoded == {b'{"order_id":"o","cents":5}'}
    with pytest.raises(TypeError, match="multiple values for argument 'order_id'"):
        definition.encode_input("o", order_id="p")
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        definition.encode_input("o", 5, nope=5)
    with pytest.raises(TypeError, match="too many positional arguments"):
        definition.encode_input("o", 5, 6)


def test_registry_lookups() -> None:
    registry = Registry([checkout, named.definition], steps=[charge])
    assert [w.name for w in registry.workflows] == [checkout.name, "renamed-flow"]
    assert registry.workflow(checkout.name) is checkout.definition
    assert registry.step(charge.name) is charge.definition
    assert registry.step("tests.refund") is refund.definition  # found process-wide
    assert registry.has_step("tests.refund")
    assert not registry.has_workflow("nope")
    with pytest.raises(WorkflowNotRegisteredError, match=r"'nope'.*serves"):
        registry.workflow("nope")
    with pytest.raises(StepNotRegisteredError, match="import the module"):
        registry.step("nope")


def test_registry_refuses_two_functions_under_one_name() -> None:
    registry = Registry([checkout])

    @workflow(name=checkout.name)
    async def impostor() -> None:
        return None

    with pytest.raises(ConfigurationError, match="two workflows are named"):
        registry.add_workflow(impostor)
    registry.add_workflow(checkout)  # the same function again is fine
    with pytest.raises(TypeError, match="not a @workflow"):
        registry.add_workflow(charge)  # type: ignore[arg-type]
