"""Records and events on the wire, ids, payload serialization, and the error codes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import pickle
import re
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
import pytest

import worldflow
from worldflow import InvalidEventError, SerializationError, WorldflowError
from worldflow._serde import decode, encode, encode_bytes
from worldflow.errors import (
    RetryableError,
    RunOwnedElsewhereError,
    WorkflowFailedError,
    error_details,
    error_from_code,
)
from worldflow.worlds import (
    AnyEvent,
    ChildEnded,
    ChildFailed,
    ErrorInfo,
    EventRaised,
    HookConflict,
    HookCreated,
    HookDisposed,
    HookReceived,
    PatchMarked,
    QueueMessage,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunResumed,
    RunStalled,
    RunStarted,
    RunSuspended,
    RunUnstalled,
    StateUpdated,
    StepCompleted,
    StepCreated,
    StepFailed,
    StepInterrupted,
    StepResumed,
    StepRetrying,
    StepStarted,
    StepSuspended,
    StepWoken,
    WaitCompleted,
    WaitCreated,
    WaitWoken,
    decode_event,
    decode_events,
    encode_event,
    new_id,
)
from worldflow.worlds._events import EVENT_TYPES
from worldflow.worlds._ids import encode_ulid

# -- events ----------------------------------------------------------------------------------

_AT = dt.datetime(2030, 5, 17, 8, 30, 1, 123456, tzinfo=dt.UTC)
_RAW = msgspec.Raw(b'{"k":[1,2.5,"x",null]}')
_ERR = ErrorInfo(name="KeyError", message="'sku'", code="step_failed", stack="Traceback ...")
_COMMON: dict[str, Any] = {"run_id": "wrun_1", "seq": 7, "event_id": "evnt_1", "created_at": _AT}

EVERY_EVENT: list[AnyEvent] = [
    RunCreated(
        **_COMMON,
        workflow_name="m:wf",
        input=_RAW,
        resource_id="u1",
        metadata={"a": "b"},
        initial_state=_RAW,
        parent_run_id="wrun_0",
    ),
    RunStarted(**_COMMON),
    RunCompleted(**_COMMON, output=_RAW),
    RunFailed(**_COMMON, error=_ERR),
    RunCancelled(**_COMMON, reason="ops", output=_RAW),
    RunSuspended(**_COMMON, reason="pause"),
    RunResumed(**_COMMON),
    RunStalled(**_COMMON, error=_ERR, position=3, recorded="step 'a'", current="step 'b'"),
    RunUnstalled(**_COMMON),
    StepCreated(**_COMMON, correlation_id="step_1", step_name="charge", input=_RAW),
    StepStarted(**_COMMON, correlation_id="step_1"),
    StepCompleted(**_COMMON, correlation_id="step_1", result=_RAW),
    StepFailed(**_COMMON, correlation_id="step_1", error=_ERR),
    StepRetrying(**_COMMON, correlation_id="step_1", error=_ERR, retry_after=_AT),
    StepInterrupted(**_COMMON, correlation_id="step_1", reason="the engine stopped"),
    StepSuspended(**_COMMON, correlation_id="step_1", payload=_RAW),
    StepResumed(**_COMMON, correlation_id="step_1", data=_RAW),
    StepWoken(**_COMMON, correlation_id="step_1", actor="alice"),
    WaitCreated(**_COMMON, correlation_id="wait_1", resume_at=_AT, event_name="shipped"),
    WaitCompleted(**_COMMON, correlation_id="wait_1"),
    WaitWoken(**_COMMON, correlation_id="wait_1", actor="session 1a2b"),
    HookCreated(**_COMMON, correlation_id="hook_1", token="t", metadata=_RAW, is_webhook=True),
    HookConflict(**_COMMON, correlation_id="hook_1", token="t", conflicting_run_id="wrun_2"),
    HookReceived(**_COMMON, correlation_id="hook_1", payload=_RAW),
    ChildEnded(
        **_COMMON,
        correlation_id="hook_1",
        child_run_id="wrun_1-step_1",
        outcome=ChildFailed(error=_ERR),
    ),
    HookDisposed(**_COMMON, correlation_id="hook_1"),
    EventRaised(**_COMMON, name="shipped", payload=_RAW),
    StateUpdated(**_COMMON, state=_RAW),
    PatchMarked(**_COMMON, name="discount"),
]


def test_the_sample_covers_every_event_type() -> None:
    assert {e.type for e in EVERY_EVENT} == EVENT_TYPES
    assert len(EVERY_EVENT) == len(EVENT_TYPES)


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.type)
def test_every_event_round_trips(event: AnyEvent) -> None:
    data = encode_event(event)
    assert msgspec.json.decode(data)["type"] == event.type
    decoded = decode_event(data)
    assert type(decoded) is type(event)
    assert decoded == event
    assert decode_event(data.decode()) == event  # str input too


def test_a_batch_round_trips() -> None:
    data = b"[" + b",".join(encode_event(e) for e in EVERY_EVENT) + b"]"
    assert decode_events(data) == EVERY_EVENT


def test_defaults_are_filled_when_decoding() -> None:
    event = decode_event(b'{"type":"run_started","run_id":"r"}')
    assert event == RunStarted(run_id="r")
    assert event.seq == 0
    assert event.event_id == ""


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            b'{"type":"step_created","run_id":"r","correlation_id":"s","step_name":5,"input":1}',
            "step_name",
        ),
        (b'{"type":"run_started","run_id":"r","seq":"seven"}', "seq"),
        (b'{"type":"run_started","run_id":42}', "run_id"),
        (b'{"type":"run_created","run_id":"r","input":1}', "workflow_name"),
        (
            b'{"type":"run_created","run_id":"r","workflow_name":"w","input":1,"metadata":{"a":1}}',
            "metadata",
        ),
        (
            b'{"type":"wait_created","run_id":"r","correlation_id":"w","resume_at":"soon"}',
            "resume_at",
        ),
        (b'{"type":"run_failed","run_id":"r","error":{"name":"E"}}', "message"),
        (
            b'{"type":"hook_created","run_id":"r","correlation_id":"h","token":"t",'
            b'"is_webhook":"yes"}',
            "is_webhook",
        ),
        (b'{"type":"no_such_event","run_id":"r"}', "type"),
        (b'{"run_id":"r"}', "type"),
    ],
)
def test_malformed_events_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event(data)
    assert field in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", b'"run_started"', b"\xff"])
def test_not_an_event_at_all(data: bytes) -> None:
    with pytest.raises(InvalidEventError):
        decode_event(data)


def test_a_malformed_batch_names_the_position() -> None:
    with pytest.raises(InvalidEventError, match=r"\[1\]"):
        decode_events(b'[{"type":"run_started","run_id":"r"},{"type":"run_started"}]')


# -- ids ---------------------------------------------------------------------------------------

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


@pytest.mark.parametrize("prefix", ["wrun", "step", "hook", "wait", "evnt"])
def test_ids_are_prefixed_ulids(prefix: str) -> None:
    value = new_id(prefix)
    head, _, ulid = value.partition("_")
    assert head == prefix
    assert _ULID.match(ulid), value


def test_ids_sort_in_creation_order() -> None:
    ids = [new_id("evnt") for _ in range(2000)]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_ulid_time_part_is_the_creation_time() -> None:
    before = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    ulid = new_id("wrun").removeprefix("wrun_")
    after = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ms = 0
    for char in ulid[:10]:
        ms = ms * 32 + alphabet.index(char)
    assert before <= ms <= after


def test_ulid_encoding_bounds() -> None:
    assert encode_ulid(0, 0) == "0" * 26
    assert encode_ulid((1 << 48) - 1, (1 << 80) - 1) == "7" + "Z" * 25
    assert encode_ulid(1, 0) < encode_ulid(2, 0) < encode_ulid(2, 1)


# -- payload serialization -------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float
    tags: tuple[str, ...] = ()


class Vec(msgspec.Struct, frozen=True):
    x: float
    label: str
    when: dt.datetime


class Pair(NamedTuple):
    a: int
    b: str


ROUND_TRIPS: list[Any] = [
    None,
    True,
    False,
    0,
    -(2**62),
    2.5,
    float("inf"),
    float("-inf"),
    "",
    'text with ünïcode and "quotes"',
    [],
    [1, [2, [3]]],
    {},
    {"a": {"b": [1, None]}},
    dt.datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    dt.datetime(2030, 1, 2, 3, 4, 5),  # naive stays naive
    dt.datetime(2030, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 58, 1),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.14159265358979323846"),
    b"\x00\xffbytes",
    (1, "two", (3.0,)),
    {1, 2, 3},
    frozenset({"a", "b"}),
    {1: "int key", (2, 3): "tuple key"},
    {"$wf": "a user key that looks like a tag"},
    Color.RED,
    Color.BLUE,
    Point(1, 2.5, ("a",)),
    Vec(x=1.5, label="v", when=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
    [Point(0, 0.0), {"nested": (Color.BLUE, {frozenset({1})})}],
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_supported_values_round_trip(value: Any) -> None:
    decoded = decode(encode(value))
    assert decoded == value
    assert type(decoded) is type(value)
    assert decode(encode_bytes(value)) == value


def test_nan_round_trips() -> None:
    assert math.isnan(decode(encode(float("nan"))))
    assert math.isnan(decode(encode([float("nan")]))[0])


def test_named_tuples_and_bytearrays_come_back_as_their_base_type() -> None:
    assert decode(encode(Pair(1, "x"))) == (1, "x")
    assert decode(encode(bytearray(b"ab"))) == b"ab"


def test_json_native_values_stay_plain_json() -> None:
    assert bytes(encode({"n": 1, "l": [True, None]})) == b'{"n":1,"l":[true,null]}'


def test_sets_encode_deterministically() -> None:
    assert bytes(encode({3, 1, 2})) == bytes(encode({2, 3, 1}))
    assert bytes(encode(frozenset({"b", "a"}))) == bytes(encode(frozenset({"a", "b"})))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (object(), "$"),
        ({"a": [1, object()]}, "$.a[1]"),
        ([{"x": {1, 2}}, {"y": lambda: None}], "$[1].y"),
        ((1, (2, print)), "$[1][1]"),
    ],
)
def test_unsupported_values_name_the_path(value: Any, path: str) -> None:
    with pytest.raises(SerializationError) as caught:
        encode(value)
    assert f" at {path}:" in str(caught.value)


def test_local_classes_are_refused_with_advice() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="module level"):
        encode(Local(1))


def test_malformed_payloads_raise_serialization_error() -> None:
    with pytest.raises(SerializationError):
        decode(b"{not json")
    with pytest.raises(SerializationError):
        decode(b'{"$wf": "no-such-tag", "v": 1}')
    with pytest.raises(SerializationError):
        decode(b'{"$wf": "enum", "cls": "no.such.module:Thing", "v": 1}')


# -- error codes -------------------------------------------------------------------------------


def _all_errors() -> list[type[WorldflowError]]:
    found: list[type[WorldflowError]] = []
    pending: list[type[WorldflowError]] = [WorldflowError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == "worldflow.errors"]


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in _all_errors()]
    assert len(codes) == len(set(codes)), sorted(codes)


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda c: c.__name__)
def test_error_codes_map_both_ways(cls: type[WorldflowError]) -> None:
    error = error_from_code(cls.code, "it broke")
    assert type(error) is cls
    assert error.message == "it broke"
    assert str(error) == "it broke"
    assert error.http_status == cls.http_status
    assert 400 <= cls.http_status <= 599
    assert getattr(worldflow, cls.__name__) is cls  # every error is public
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.message) == (cls, "it broke")


def test_an_errors_details_survive_pickling() -> None:
    failed = WorkflowFailedError("no", run_id="wrun_1", error_name="KeyError")
    owned = RunOwnedElsewhereError("taken", owner_id="eng_2", owner_epoch=3)
    retry = RetryableError("later", retry_after=dt.timedelta(seconds=30))
    for error in (failed, owned, retry):
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error)
        assert vars(clone) == vars(error)
    assert error_details(failed) == {"run_id": "wrun_1", "error_name": "KeyError"}


def test_unknown_error_code_gives_the_base_class() -> None:
    error = error_from_code("from_a_newer_server", "hm")
    assert type(error) is WorldflowError
    assert error.message == "hm"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("InvalidEventError", 400),
        ("SerializationError", 400),
        ("RunNotFoundError", 404),
        ("StepNotFoundError", 404),
        ("HookNotFoundError", 404),
        ("StreamNotFoundError", 404),
        ("EntityConflictError", 409),
        ("HookConflictError", 409),
        ("RunTerminalError", 409),
        ("RunNotTerminalError", 409),
        ("LeaseLostError", 409),
        ("WorldLockedError", 423),
        ("CorruptLogError", 500),
        ("WorldNotAvailableError", 500),
    ],
)
def test_http_statuses_of_world_errors(name: str, status: int) -> None:
    cls: type[WorldflowError] = getattr(worldflow, name)
    assert cls.http_status == status
    assert type(error_from_code(cls.code, "")) is cls


def test_queue_message_kinds_are_checked_when_built_and_decoded() -> None:
    run = QueueMessage(kind="run", run_id="wrun_a", workflow_name="wf")
    step = QueueMessage(kind="step", run_id="wrun_a", step_id="step_1")
    for message in (run, step):
        assert msgspec.json.decode(msgspec.json.encode(message), type=QueueMessage) == message
    # What a file world's queue journal holds today decodes unchanged.
    assert (
        msgspec.json.decode(
            b'{"kind":"run","run_id":"wrun_a","step_id":null,"workflow_name":"wf","engine_id":null}',
            type=QueueMessage,
        )
        == run
    )
    with pytest.raises(ValueError, match="names its step_id"):
        QueueMessage(kind="step", run_id="wrun_a")
    with pytest.raises(ValueError, match="has no step_id"):
        QueueMessage(kind="run", run_id="wrun_a", step_id="step_1")
    with pytest.raises(ValueError, match="not 'job'"):
        QueueMessage(kind="job", run_id="wrun_a")  # type: ignore[arg-type]
    for bad, field in (
        (b'{"kind":"job","run_id":"wrun_a"}', "kind"),
        (b'{"kind":"step","run_id":"wrun_a"}', "step_id"),
    ):
        with pytest.raises(msgspec.ValidationError, match=field):
            msgspec.json.decode(bad, type=QueueMessage)
