"""Checks every event at the append boundary, before anything is stored.

Static types do not stop a caller from putting ``5`` where a ``str`` goes, or a string
that cannot be encoded, or a payload of a gigabyte: msgspec Structs do not check their
fields when built. A world that stored such an event would write a log its own decoder
refuses on the next open. :func:`validate_event` is the one check, run by the rules
(``worldflow.worlds._rules``) for every world, so whatever any world accepts, every world
can read back:

* every field has its declared type: the event is encoded and decoded with the strict
  decoder that reads logs (which also checks that each payload is JSON);
* ids follow :func:`~worldflow.worlds._ids.id_problem`;
* names, texts, payloads and metadata stay within the limits below.

A refusal is an :class:`~worldflow.InvalidEventError` naming the event type and the field.

Every append of every workflow goes through here, so each event class also has a *plain*
check (:func:`_plain_check`, made once per class): one pass over the fields that accepts an
event only when every value is of the exact type the engine builds and within its limits
(a ``str`` that encodes, a ``msgspec.Raw`` holding one JSON value, a UTC ``datetime``, an
``int`` in range, ...). What it accepts the full check accepts too; anything else (a
subclass, a nested record, any bad value) goes through the full check, which decides and
names the field. The plain check costs about a fifth of the encode and strict decode.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import msgspec

from worldflow.errors import InvalidEventError
from worldflow.worlds._events import _EVENT_CLASSES, CORRELATED_EVENT_TYPES, AnyEvent, Event
from worldflow.worlds._ids import MAX_ID_LENGTH, id_problem
from worldflow.worlds._records import ErrorInfo

__all__ = [
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_VALUE",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_LENGTH",
    "name_problem",
    "validate_event",
]

MAX_PAYLOAD_BYTES: Final = 64 * 1024 * 1024
"""The largest encoded payload (input, output, hook payload, state, ...) a world stores."""
MAX_NAME_LENGTH: Final = 512
"""The longest workflow, step, event or error name."""
MAX_TEXT_LENGTH: Final = 1024 * 1024
"""The longest free text (a cancel reason, an error message or stack)."""
MAX_METADATA_ENTRIES: Final = 256
MAX_METADATA_VALUE: Final = 4096
"""Run metadata: at most this many entries; keys are names, values at most this long."""

_ID_FIELDS: Final = frozenset(
    {
        "run_id",
        "correlation_id",
        "parent_run_id",
        "conflicting_run_id",
        "token",
        "child_run_id",
        "forked_from",
    }
)
_NAME_FIELDS: Final = frozenset({"workflow_name", "step_name", "name", "event_name", "actor"})
_CONTROL: Final = re.compile("[\\x00-\\x1f\\x7f-\\x9f]")
_STAMPS: Final = frozenset({"seq", "event_id", "created_at"})

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)
_one_json_value = msgspec.json.Decoder(msgspec.Raw).decode  # raises unless bytes hold one
_PATH: Final = re.compile(r" - at `\$\.([A-Za-z_]+)(.*)`$")


def name_problem(value: object, *, limit: int = MAX_NAME_LENGTH) -> str | None:
    """What is wrong with ``value`` as a name (non-empty, no control characters), or None."""
    if not isinstance(value, str):
        return f"must be a str, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    if _CONTROL.search(value):
        return "holds a control character"
    return None


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a str or None, not {type(value).__name__} ({value!r:.40})"
    if len(value) > MAX_TEXT_LENGTH:
        return f"is {len(value)} characters long; the limit is {MAX_TEXT_LENGTH}"
    return None


def _kinds(cls: type[Event]) -> tuple[tuple[str, str], ...]:
    """How each field of an event class is checked beyond its type."""
    out: list[tuple[str, str]] = []
    for f in msgspec.structs.fields(cls):
        if f.name in _STAMPS:
            continue
        if f.name in _ID_FIELDS:
            kind = "id"
        elif f.name in _NAME_FIELDS:
            kind = "name"
        elif f.type is msgspec.Raw:
            kind = "payload"
        elif f.type == dict[str, str]:
            kind = "metadata"
        elif f.type == ErrorInfo:
            kind = "error"
        elif f.type in (datetime, datetime | None):
            kind = "time"
        elif f.type in (str, str | None):
            kind = "text"
        else:
            continue  # bool and the like: the type check is all there is to it
        out.append((f.name, kind))
    return tuple(out)


_SPECS: Final[dict[type, tuple[tuple[str, str], ...]]] = {c: _kinds(c) for c in _EVENT_CLASSES}


def _refuse(event: Event, field: str, problem: str) -> InvalidEventError:
    return InvalidEventError(f"event {event.type}: field `{field}` {problem}")


def validate_event(event: object, run_id: str) -> None:
    """Refuse ``event`` for ``run_id``'s log with :class:`InvalidEventError` unless every
    field is of its type and within its limits; see the module docstring."""
    plain = _PLAIN.get(type(event)) or _plain_for(type(event))
    if plain is not None and plain(event, run_id):
        return
    _full_check(event, run_id)


def _plain_for(cls: type) -> Callable[[object, str], bool] | None:
    """The plain check of event class ``cls`` (written on its first use, so importing stays
    cheap), or ``None`` for a class that is not exactly one of the events."""
    plain = _PLAIN.get(cls)
    if plain is None and cls in _SPECS:
        plain = _PLAIN[cls] = _plain_check(cls)
    return plain


def _full_check(event: object, run_id: str) -> None:
    spec = _SPECS.get(type(event))
    if spec is None:
        if not isinstance(event, _EVENT_CLASSES):
            raise InvalidEventError(f"not an event: {type(event).__name__} ({event!r:.60})")
        spec = _SPECS[next(c for c in type(event).__mro__ if c in _SPECS)]
    ev: Event = event  # type: ignore[assignment]  # an instance of one of _SPECS
    problem: str | None
    if ev.run_id != run_id:
        problem = id_problem(ev.run_id)
        if problem is not None:
            raise _refuse(ev, "run_id", problem)
        raise InvalidEventError(
            f"event {ev.type} is for run {ev.run_id!r}, appended to run {run_id!r}"
        )
    if ev.type in CORRELATED_EVENT_TYPES and (
        not isinstance(ev.correlation_id, str) or not ev.correlation_id
    ):
        raise _refuse(ev, "correlation_id", "must be a non-empty str")
    for name, kind in spec:  # sizes first: a huge payload is refused before it is copied
        value = getattr(ev, name)
        if value is None:
            continue
        if kind == "payload":
            problem = _payload_problem(value)
        elif kind == "id" or kind == "name":
            problem = id_problem(value) if kind == "id" else name_problem(value)
        elif kind == "text":
            problem = _text_problem(value)
        elif kind == "time":
            problem = _time_problem(value)
        elif kind == "metadata":
            name, problem = _metadata_problem(name, value)
        else:  # error
            name, problem = _error_problem(name, value)
        if problem is not None:
            raise _refuse(ev, name, problem)
    _check_types(ev)


def _payload_problem(value: object) -> str | None:
    if type(value) is not msgspec.Raw:
        return (
            f"must be an encoded payload (msgspec.Raw), not {type(value).__name__} "
            f"({value!r:.40}); encode values with the engine's serializer"
        )
    if len(value) > MAX_PAYLOAD_BYTES:
        return f"is {len(value)} bytes encoded; the limit is {MAX_PAYLOAD_BYTES}"
    try:
        _one_json_value(value)  # alone: `1,"x":2` parses inside an event, as two fields
    except msgspec.DecodeError:
        return "is not a JSON payload (encode values with the engine)"
    return None


def _time_problem(value: object) -> str | None:
    if not isinstance(value, datetime):
        return f"must be a datetime, not {type(value).__name__} ({value!r:.40})"
    return "must be timezone-aware" if value.tzinfo is None else None


def _check_types(ev: Event) -> None:
    """Every field of its declared type, and encodable: what the log decoder will demand."""
    try:
        data = _encoder.encode(ev)
    except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        raise _refuse(ev, *_unencodable(ev, exc)) from None
    try:
        _decoder.decode(data)
    except msgspec.ValidationError as exc:
        match = _PATH.search(str(exc))
        if match is None:  # pragma: no cover - msgspec always names the path
            raise InvalidEventError(f"event {ev.type}: {exc}") from None
        message = str(exc)[: match.start()]
        field = match.group(1) + match.group(2)
        value = getattr(ev, match.group(1), None)
        raise _refuse(ev, field, f"is invalid: {message} ({value!r:.60})") from None
    except msgspec.DecodeError:
        field = _bad_payload(ev)
        raise _refuse(ev, field, "is not a JSON payload (encode values with the engine)") from None


def _unencodable(ev: Event, exc: Exception) -> tuple[str, str]:
    for f in ev.__struct_fields__:
        try:
            _encoder.encode(getattr(ev, f))
        except (TypeError, ValueError, OverflowError) as inner:
            value = getattr(ev, f)
            if isinstance(inner, UnicodeEncodeError):
                return f, f"holds a string that cannot be stored ({inner.reason}) ({value!r:.60})"
            return f, f"cannot be stored: {inner} ({value!r:.60})"
    return "?", f"cannot be stored: {exc}"  # pragma: no cover


def _bad_payload(ev: Event) -> str:
    for f in ev.__struct_fields__:
        value = getattr(ev, f)
        if isinstance(value, msgspec.Raw):
            try:
                msgspec.json.decode(value)
            except msgspec.DecodeError:
                return f
    return "?"  # pragma: no cover


def _metadata_problem(field: str, metadata: object) -> tuple[str, str | None]:
    if not isinstance(metadata, dict):
        return field, f"must be a dict of str to str, not {type(metadata).__name__}"
    if len(metadata) > MAX_METADATA_ENTRIES:
        return field, f"has {len(metadata)} entries; the limit is {MAX_METADATA_ENTRIES}"
    for key, value in metadata.items():
        problem = name_problem(key, limit=MAX_NAME_LENGTH)
        if problem is not None:
            return f"{field}[{key!r:.40}]", f"key {problem}"
        if not isinstance(value, str):
            return f"{field}[{key!r:.40}]", f"must be a str, not {type(value).__name__}"
        if len(value) > MAX_METADATA_VALUE:
            return f"{field}[{key!r:.40}]", (
                f"is {len(value)} characters long; the limit is {MAX_METADATA_VALUE}"
            )
    return field, None


def _error_problem(field: str, error: object) -> tuple[str, str | None]:
    if not isinstance(error, ErrorInfo):
        return field, f"must be an ErrorInfo, not {type(error).__name__} ({error!r:.40})"
    problem = name_problem(error.name)
    if problem is not None:
        return f"{field}.name", problem
    for part in ("message", "stack", "code"):
        text = getattr(error, part)
        if text is not None and not isinstance(text, str):
            return f"{field}.{part}", f"must be a str, not {type(text).__name__}"
        if text is not None and len(text) > MAX_TEXT_LENGTH:
            return (
                f"{field}.{part}",
                f"is {len(text)} characters long; the limit is {MAX_TEXT_LENGTH}",
            )
    return field, None


# -- the plain check ---------------------------------------------------------------------------


def _storable(text: str) -> bool:
    """Whether a ``str`` encodes (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _good_id(value: object) -> bool:
    """Whether ``value`` is an exact ``str`` that passes the id rule and encodes (the plain
    checks' way for what their printable test leaves: a format character, a refusal)."""
    return type(value) is str and id_problem(value) is None and _storable(value)


def _good_name(value: object) -> bool:
    """:func:`_good_id` for names."""
    return type(value) is str and name_problem(value) is None and _storable(value)


def _printable(value: str, limit: int) -> bool:
    """Whether ``value`` is 1 to ``limit`` printable characters (``str.isprintable``): then
    it passes the id and the name rule and encodes, since C0 and C1 controls and DEL (category
    Cc) and lone surrogates (Cs) are not printable (checked over every code point by
    ``tests/worlds/test_validation_plain.py``). One C pass, no regular expression; what it
    leaves (a format character, a line separator, a refusal) takes the rule itself."""
    return 0 < len(value) <= limit and value.isprintable()


def _good_text(value: object) -> bool:
    return type(value) is str and len(value) <= MAX_TEXT_LENGTH and _storable(value)


def _good_metadata(value: object) -> bool:
    if type(value) is not dict or len(value) > MAX_METADATA_ENTRIES:
        return False
    for key, item in value.items():
        if not ((type(key) is str and _printable(key, MAX_NAME_LENGTH)) or _good_name(key)):
            return False
        if type(item) is not str or len(item) > MAX_METADATA_VALUE or not _storable(item):
            return False
    return True


def _good_error(value: object) -> bool:
    if type(value) is not ErrorInfo:
        return False
    return (
        (
            (type(value.name) is str and _printable(value.name, MAX_NAME_LENGTH))
            or _good_name(value.name)
        )
        and _good_text(value.message)
        and (value.code is None or _good_text(value.code))
        and (value.stack is None or _good_text(value.stack))
    )


# The test of one field's value ``v`` for each kind (``{b}``: an int's bounds), written into
# the plain check of each class. Each accepts only what the full check accepts.
_TESTS: Final = {
    # printable text of the right length passes the id and name rules (see _printable); the
    # rest (other characters, refusals) takes the rule itself
    "id": "type(v) is str and 0 < len(v) <= MAX_ID and v.isprintable() or good_id(v)",
    "name": "type(v) is str and 0 < len(v) <= MAX_NAME and v.isprintable() or good_name(v)",
    "payload": "type(v) is Raw and len(v) <= MAX_PAYLOAD",  # and one JSON value: see below
    "text": "type(v) is str and len(v) <= MAX_TEXT and v.isascii() or good_text(v)",
    "time": "type(v) is datetime and v.tzinfo is UTC",
    "metadata": "type(v) is dict and not v or good_metadata(v)",
    "error": "good_error(v)",
    "bool": "type(v) is bool",
    "int": "type(v) is int",
    "bounded": "type(v) is int and {b[0]} <= v <= {b[1]}",
    "record": "False",  # a nested Struct: the full check's decoder checks it
}
_NAMESPACE: Final = {
    "MAX_ID": MAX_ID_LENGTH,
    "MAX_NAME": MAX_NAME_LENGTH,
    "MAX_TEXT": MAX_TEXT_LENGTH,
    "MAX_PAYLOAD": MAX_PAYLOAD_BYTES,
    "Raw": msgspec.Raw,
    "DecodeError": msgspec.DecodeError,
    "one_json_value": _one_json_value,
    "UTC": UTC,
    "datetime": datetime,
    "good_id": _good_id,
    "good_name": _good_name,
    "good_text": _good_text,
    "good_metadata": _good_metadata,
    "good_error": _good_error,
}


def _plain_check(cls: type[Event]) -> Callable[[object, str], bool]:
    """The plain check of ``cls`` (see the module docstring): a function of ``(event,
    run_id)`` that is true when every field is plainly good."""
    scope: dict[str, object] = dict(_NAMESPACE)
    exec(_plain_source(cls), scope)  # our own source, written from the event class
    plain = scope["plain"]
    plain.__qualname__ = f"plain_check_{cls.__name__}"  # type: ignore[attr-defined]
    return plain  # type: ignore[return-value]


def _plain_source(cls: type[Event]) -> str:
    """The source of :func:`_plain_check`'s function for ``cls``, field by field."""
    kinds = dict(_SPECS[cls])
    correlated = cls.__struct_config__.tag in CORRELATED_EVENT_TYPES
    lines = [
        "def plain(ev, run_id):",
        "    if ev.run_id != run_id or type(ev.seq) is not int:",
        "        return False",
        "    v = ev.event_id",
        "    w = ev.created_at",
        "    if type(v) is not str or not v.isascii() or type(w) is not datetime:",
        "        return False",
        "    if w.tzinfo is not UTC and w.tzinfo is not None:",
        "        return False",
    ]
    for f in msgspec.structs.fields(cls):
        if f.name in _STAMPS:
            continue
        kind, bounds = kinds.get(f.name), None
        if kind is None:
            kind, bounds = _plain_kind(f.type)
        test = _TESTS[kind].format(b=bounds)
        nullable = type(None) in typing.get_args(f.type)
        if f.name == "correlation_id" and correlated:
            nullable = False
        lines.append(f"    v = ev.{f.name}")
        lines.append(f"    if {'v is not None and ' if nullable else ''}not ({test}):")
        lines.append("        return False")
        if kind == "payload":  # one JSON value, as the log's decoder will find it
            lines += ["    try:", "        one_json_value(v)", "    except DecodeError:"]
            lines.append("        return False")
    lines.append("    return True")
    return "\n".join(lines)


def _plain_kind(annotation: object) -> tuple[str, tuple[int, int] | None]:
    """The plain kind of a field the full check leaves to the decoder."""
    if annotation is bool:
        return "bool", None
    if annotation is int:
        return "int", None
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        meta = next((m for m in extras if isinstance(m, msgspec.Meta)), None)
        if base is int and meta is not None and meta.ge is not None and meta.le is not None:
            return "bounded", (int(meta.ge), int(meta.le))
    return "record", None


_PLAIN: Final[dict[type, Callable[[object, str], bool]]] = {}
"""The plain check of each event class (exactly that class) met so far."""
