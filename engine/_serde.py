"""Payload encoding: Python values <-> msgspec JSON that round-trips their types.

JSON-native values (``None``, ``bool``, ``int``, ``float``, ``str``, lists, dicts with ``str``
keys) are stored as plain JSON, so logs stay readable and other tools can use them. Other
common types are stored as a tagged object ``{"$wf": TAG, ...}`` and come back as what they
were: ``datetime``, ``date``, ``time``, ``timedelta``, ``UUID``, ``Decimal``, ``bytes``,
``tuple``, ``set``, ``frozenset``, dicts with non-``str`` keys, enums, dataclasses and
msgspec Structs (the last three by importable class path).

Encoding is deterministic (sets are sorted by their encoded elements), because the engine
compares a replayed step's encoded input with the recorded one. A value that cannot be
encoded raises :class:`~worldflow.SerializationError` at the call that passed it, naming
where in the value the problem is.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import math
import uuid
from decimal import Decimal
from typing import Any

import msgspec

from worldflow.errors import SerializationError

__all__ = ["decode", "encode", "encode_bytes"]

_TAG = "$wf"
_TAG_BYTES = b'"$wf"'
_SCALARS = (str, int, float, bool, type(None))
_PLAIN = frozenset((str, int, bool, type(None)))  # JSON as they are (floats if finite)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_raw_cache_null = msgspec.Raw(b"null")


def _class_path(cls: type) -> str:
    if "<locals>" in cls.__qualname__:
        raise SerializationError(
            f"{cls.__qualname__} is defined inside a function; move it to module level so a "
            "replay can import it"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SerializationError(
            f"cannot load class {path!r} for a stored payload: {exc}"
        ) from None
    if not isinstance(obj, type):
        raise SerializationError(f"{path!r} is not a class")
    return obj


def _to_json(value: Any, path: str) -> Any:
    """Turn ``value`` into JSON-native data, tagging what JSON cannot hold."""
    t = type(value)
    if t is float and not math.isfinite(value):  # JSON has no inf/nan: msgspec writes null
        return {_TAG: "float", "v": repr(value)}
    if t in _SCALARS:
        return value
    if t is list:
        return [_to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if t is dict:
        if _TAG not in value:
            for k, v in value.items():
                tv = type(v)
                if type(k) is not str or (
                    tv not in _PLAIN and (tv is not float or not math.isfinite(v))
                ):
                    break
            else:
                return value  # str keys, plain scalars (a step's usual input): as it is
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: _to_json(v, f"{path}.{k}") for k, v in value.items()}
        return {
            _TAG: "dict",
            "v": [
                [_to_json(k, f"{path}<key>"), _to_json(v, f"{path}[{k!r}]")]
                for k, v in value.items()
            ],
        }
    if isinstance(value, enum.Enum):
        return {_TAG: "enum", "cls": _class_path(t), "v": _to_json(value.value, path)}
    for base in (str, int, float):  # a scalar's subclass (not an enum): keep the plain value
        if isinstance(value, base):
            return base(value)
    if t is tuple:
        return {_TAG: "tuple", "v": [_to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if t is set or t is frozenset:
        items = [_to_json(v, f"{path}{{}}") for v in value]
        items.sort(key=_encoder.encode)
        return {_TAG: "set" if t is set else "frozenset", "v": items}
    if t is dt.datetime:
        return {_TAG: "datetime", "v": value.isoformat()}
    if t is dt.date:
        return {_TAG: "date", "v": value.isoformat()}
    if t is dt.time:
        return {_TAG: "time", "v": value.isoformat()}
    if t is dt.timedelta:
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if t is uuid.UUID:
        return {_TAG: "uuid", "v": str(value)}
    if t is Decimal:
        return {_TAG: "decimal", "v": str(value)}
    if t is bytes or t is bytearray or t is memoryview:
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, msgspec.Struct):
        fields = {f: _to_json(getattr(value, f), f"{path}.{f}") for f in value.__struct_fields__}
        return {_TAG: "struct", "cls": _class_path(t), "v": fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _to_json(getattr(value, f.name), f"{path}.{f.name}")
            for f in dataclasses.fields(value)
        }
        return {_TAG: "dataclass", "cls": _class_path(t), "v": fields}
    if isinstance(value, tuple) and hasattr(t, "_fields"):  # NamedTuple: keep as a tuple
        return {_TAG: "tuple", "v": [_to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    raise SerializationError(
        f"cannot encode a value of type {t.__module__}.{t.__qualname__} at {path}: worldflow "
        "payloads hold JSON values, datetime, date, time, timedelta, UUID, Decimal, bytes, "
        "tuples, sets, enums, dataclasses and msgspec Structs"
    )


def _from_json(value: Any) -> Any:
    t = type(value)
    if t is list:
        return [_from_json(v) for v in value]
    if t is not dict:
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _from_json(v) for k, v in value.items()}
    v = value.get("v")
    match tag:
        case "dict":
            return {_from_json(k): _from_json(x) for k, x in v}
        case "tuple":
            return tuple(_from_json(x) for x in v)
        case "set":
            return {_from_json(x) for x in v}
        case "frozenset":
            return frozenset(_from_json(x) for x in v)
        case "float":
            return float(v)
        case "datetime":
            return dt.datetime.fromisoformat(v)
        case "date":
            return dt.date.fromisoformat(v)
        case "time":
            return dt.time.fromisoformat(v)
        case "timedelta":
            return dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
        case "uuid":
            return uuid.UUID(v)
        case "decimal":
            return Decimal(v)
        case "bytes":
            return base64.b64decode(v)
        case "enum":
            return _load_class(value["cls"])(_from_json(v))
        case "struct" | "dataclass":
            cls = _load_class(value["cls"])
            return cls(**{k: _from_json(x) for k, x in v.items()})
        case _:
            raise SerializationError(f"unknown payload tag {tag!r}")


def encode(value: Any) -> msgspec.Raw:
    """Encode ``value`` as a payload (JSON text wrapped in :class:`msgspec.Raw`).

    Raises :class:`~worldflow.SerializationError` naming the unsupported part of ``value``.

    >>> bytes(encode({"n": 1}))
    b'{"n":1}'
    """
    if value is None:
        return _raw_cache_null
    t = type(value)
    if t is int or t is str or t is bool:  # JSON-native as it is (a step's usual result)
        try:
            return msgspec.Raw(_encoder.encode(value))
        except UnicodeEncodeError:
            raise SerializationError(_why_unencodable(value)) from None
    return msgspec.Raw(encode_bytes(value))


def encode_bytes(value: Any) -> bytes:
    """Like :func:`encode`, as plain bytes."""
    try:
        return _encoder.encode(_to_json(value, "$"))
    except (RecursionError, UnicodeEncodeError):
        # Rare, so found only now: a value that holds itself, one nested past Python's
        # recursion limit, or a string no encoding can store (a lone surrogate).
        raise SerializationError(_why_unencodable(value)) from None


def _why_unencodable(value: Any) -> str:
    """Where in ``value`` the cycle, the too-deep nesting or the unencodable string is."""
    on_path: set[int] = set()
    stack: list[tuple[Any, str, bool]] = [(value, "$", False)]
    while stack:
        item, path, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            continue
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                return (
                    f"cannot encode the string at {path}: it holds "
                    f"{item[exc.start : exc.end]!r} at position {exc.start}, a lone surrogate "
                    "that no encoding can store (decode the text it came from with "
                    "errors='replace')"
                )
            continue
        children: list[tuple[Any, str]]
        if isinstance(item, dict):
            children = []
            for k, v in item.items():
                children.append((k, f"{path}<key {k!r:.30}>"))
                children.append((v, f"{path}[{k!r:.30}]"))
        elif isinstance(item, list | tuple | set | frozenset):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(item)]
        elif isinstance(item, msgspec.Struct):
            children = [(getattr(item, f), f"{path}.{f}") for f in item.__struct_fields__]
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            children = [
                (getattr(item, f.name), f"{path}.{f.name}") for f in dataclasses.fields(item)
            ]
        else:
            continue
        if id(item) in on_path:
            return (
                f"cannot encode a value that contains itself: {path} is the same "
                f"{type(item).__name__} as one that holds it (a cycle); payloads are trees"
            )
        if path.count("[") + path.count(".") > _MAX_DEPTH:
            return (
                f"cannot encode a value nested more than {_MAX_DEPTH} levels deep (at {path:.200})"
            )
        on_path.add(id(item))
        stack.append((item, path, True))
        stack.extend(reversed([(v, p, False) for v, p in children]))
    return "cannot encode the value: it is nested too deeply"  # pragma: no cover


_MAX_DEPTH = 500


def decode(payload: msgspec.Raw | bytes | str) -> Any:
    """Decode a payload made by :func:`encode` back into the value it was made from."""
    data = payload if isinstance(payload, (bytes, str)) else bytes(payload)
    try:
        value = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"malformed payload: {exc}") from None
    tagged = _TAG_BYTES in data if isinstance(data, bytes) else _TAG in data
    if not tagged:
        return value
    return _from_json(value)
