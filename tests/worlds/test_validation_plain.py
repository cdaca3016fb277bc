"""The plain check of ``worldflow.worlds._validation`` never accepts what the full check
refuses, and it is what takes the events the engine writes (else it would save nothing).

The full check (encode the event, decode it with the log's strict decoder, plus the rules of
each field) is the reference: for events of every class, built with each field either good
or one of the awkward values below, the plain check answers "good" only where the full check
passes.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.runtime import WAIT, log_of, running
from worldflow import step, workflow
from worldflow.errors import InvalidEventError
from worldflow.worlds import ChildCompleted, ErrorInfo, Event, ForkPoint, MemoryWorld
from worldflow.worlds._events import _EVENT_CLASSES
from worldflow.worlds._ids import id_problem
from worldflow.worlds._validation import _full_check, _plain_for, name_problem, validate_event

RUN = "wrun_plain"


class _Str(str):
    """A str subclass: the encoder takes it, the plain check leaves it to the full one."""


class _Number(enum.IntEnum):
    ONE = 1


_WHEN = datetime(2030, 1, 1, tzinfo=UTC)
_AWKWARD: list[object] = [
    None,
    "",
    "ok",
    "é and ü",
    "bad\ud800",
    "a\x00b",
    "line\nbreak",
    "tab\there",
    "del\x7f",
    "nel\x85",  # a C1 control: not ASCII, so the rule itself decides
    "a space",
    "zero\u200bwidth",  # a format character: not printable, yet a good id and name
    "line\u2028sep",
    "~!*/:@",
    "x" * 255,  # the longest id
    "x" * 256,
    "x" * 512,  # the longest name
    "x" * 513,
    "x" * 600,
    "x" * (1024 * 1024 + 1),
    _Str("sub"),
    5,
    0,
    -(2**31) - 1,
    2**40,
    True,
    1.5,
    _Number.ONE,
    b"bytes",
    ["list"],
    {},
    {"k": "v"},
    {"k": 5},
    {5: "v"},
    {"": "v"},
    {"k": "bad\ud800"},
    {"bad\ud800": "v"},
    {"k": "x" * 5000},
    {f"k{i}": "v" for i in range(257)},
    msgspec.Raw(b"1"),
    msgspec.Raw(b' {"a": [1, 2]} '),
    msgspec.Raw(b""),
    msgspec.Raw(b"[1,"),
    msgspec.Raw(b'1,"seed":"x"'),
    msgspec.Raw(b"nul"),
    datetime(2030, 1, 1, tzinfo=UTC),
    datetime(2030, 1, 1),
    datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))),
    datetime(2030, 1, 1, tzinfo=timezone(timedelta(seconds=30))),
    date(2030, 1, 1),
    "2030-01-01T00:00:00Z",
    ErrorInfo(name="E", message="m"),
    ErrorInfo(name="E", message="m", code="C", stack="s"),
    msgspec.structs.replace(ErrorInfo(name="E", message="m"), name=5),
    msgspec.structs.replace(ErrorInfo(name="E", message="m"), message=None),
    msgspec.structs.replace(ErrorInfo(name="E", message="m"), message="bad\ud800"),
    msgspec.structs.replace(ErrorInfo(name="E", message="m"), code=5),
    ChildCompleted(output=msgspec.Raw(b"1")),
    ChildCompleted(output=msgspec.Raw(b"[1,")),
    ForkPoint(step_id="step_1", step_name="s", step_number=1, ids_at=_WHEN),
]


def _good(annotation: object, name: str) -> object:
    """A value of ``annotation`` that every check takes."""
    if name == "run_id":
        return RUN
    args = typing.get_args(annotation)
    if type(None) in args:
        return None
    if typing.get_origin(annotation) is typing.Annotated:
        return _good(args[0], name)
    if annotation is str:
        return "step_1" if name == "correlation_id" else "good-name"
    if annotation is msgspec.Raw:
        return msgspec.Raw(b'{"x": 1}')
    if annotation is datetime:
        return datetime(2030, 1, 1, tzinfo=UTC)
    if annotation is bool:
        return False
    if annotation is int:
        return 0
    if annotation == dict[str, str]:
        return {"k": "v"}
    if annotation is ErrorInfo:
        return ErrorInfo(name="E", message="m")
    return ChildCompleted(output=msgspec.Raw(b"1"))  # the one required record: an outcome


def _event(cls: type[Event], changes: dict[str, object]) -> Event:
    fields: dict[str, Any] = {f.name: _good(f.type, f.name) for f in msgspec.structs.fields(cls)}
    fields.update(changes)
    return cls(**fields)


def _plain(cls: type[Event]) -> Callable[[object, str], bool]:
    check = _plain_for(cls)
    assert check is not None
    return check


def _full_verdict(event: Event) -> bool:
    try:
        _full_check(event, RUN)
    except InvalidEventError:
        return False
    return True


def _classes() -> list[type[Event]]:
    return sorted(_EVENT_CLASSES, key=lambda c: c.__name__)


@st.composite
def _events(draw: st.DrawFn) -> Event:
    cls = draw(st.sampled_from(_classes()))
    names = [f.name for f in msgspec.structs.fields(cls)]
    changed = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    return _event(cls, {name: draw(st.sampled_from(_AWKWARD)) for name in changed})


@pytest.mark.parametrize("cls", _classes())
def test_a_plainly_good_event_of_every_class_takes_the_plain_check(cls: type[Event]) -> None:
    event = _event(cls, {})
    assert _full_verdict(event)
    if cls.__name__ == "ChildEnded":  # its outcome is a nested record: the full check's
        assert not _plain(cls)(event, RUN)
    else:
        assert _plain(cls)(event, RUN)


@pytest.mark.parametrize("cls", _classes())
def test_no_awkward_value_in_any_field_passes_the_plain_check_alone(cls: type[Event]) -> None:
    # Every field of the class, each awkward value in turn (the others good).
    for f in msgspec.structs.fields(cls):
        for value in _AWKWARD:
            event = _event(cls, {f.name: value})
            if _plain(cls)(event, RUN):
                assert _full_verdict(event), f"the plain check took {f.name}={value!r:.80}"


@settings(derandomize=True, database=None, deadline=None, max_examples=1500)
@given(_events())
def test_two_awkward_fields_and_the_entry_point_agree_with_the_full_check(event: Event) -> None:
    if _plain(type(event))(event, RUN):
        assert _full_verdict(event), f"the plain check took {event!r:.300}"
    # And the answer of the one entry point is the full check's.
    try:
        validate_event(event, RUN)
    except InvalidEventError:
        assert not _full_verdict(event)
    else:
        assert _full_verdict(event)


def test_every_class_of_awkward_value_is_refused_somewhere() -> None:
    # The pool is worth drawing from: most awkward values are refused by the full check in
    # some field (so the property above meets refusals, not only good events).
    refused = 0
    for value in _AWKWARD:
        for cls in _EVENT_CLASSES:
            for f in msgspec.structs.fields(cls):
                if f.name in {"seq", "event_id", "created_at"}:
                    continue
                if not _full_verdict(_event(cls, {f.name: value})):
                    refused += 1
                    break
            else:
                continue
            break
    assert refused >= len(_AWKWARD) - 3


@step
async def _add(x: int) -> int:
    return x + 1


@workflow(name="tests.validation.plain")
async def _chain(x: int) -> int:
    for _ in range(3):
        x = await _add(x)
    return x


@pytest.mark.anyio
async def test_the_events_an_engine_writes_take_the_plain_check() -> None:
    world = MemoryWorld()
    try:
        async with running(world, [_chain]) as engine:
            run = await engine.start(_chain, 1, metadata={"tenant": "t-1"})
            assert await run.result(timeout=WAIT) == 4
        events = await log_of(world, run.run_id)
    finally:
        await world.aclose()
    assert {e.type for e in events} >= {"run_created", "step_created", "run_completed"}
    for event in events:
        assert _plain(type(event))(event, run.run_id), event.type


def test_printable_text_passes_the_id_and_name_rules_over_every_code_point() -> None:
    # The plain check takes a printable str of the right length as a good id or name
    # without the rules' regular expressions: no printable character may be one they refuse
    # (and every printable one encodes: lone surrogates are not printable).
    assert not "\ud800".isprintable()
    refused = [
        hex(code)
        for code in range(0x110000)
        if chr(code).isprintable()
        and (id_problem(f"a{chr(code)}") is not None or name_problem(f"a{chr(code)}") is not None)
    ]
    assert refused == []
