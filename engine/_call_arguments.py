"""A call's arguments as a recorded input: bound to the signature, encoded, and back.

A step's or workflow's input is recorded as its *bound* arguments (``{parameter: value}``), so
``charge("o-1", 1999)`` and ``charge(order_id="o-1", cents=1999)`` record the same input and
replay the same. Defaults are not filled in: changing a default later does not change what
earlier calls recorded. The common call (every plain parameter by position) is bound without
``inspect``, which costs tens of microseconds a call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from worldflow import _serde
from worldflow.errors import SerializationError
from worldflow.worlds import ParameterInfo, Payload

__all__ = [
    "NOT_PLAIN",
    "NotPlain",
    "decode_arguments",
    "encode_arguments",
    "parameters",
    "plain_names",
]


def parameters(signature: inspect.Signature) -> tuple[ParameterInfo, ...]:
    """What the catalog shows of each parameter of ``signature``."""
    out = []
    for p in signature.parameters.values():
        annotation = None
        if p.annotation is not inspect.Parameter.empty:
            annotation = (
                p.annotation
                if isinstance(p.annotation, str)
                else inspect.formatannotation(p.annotation)
            )
        variadic = p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        has_default = p.default is not inspect.Parameter.empty
        out.append(
            ParameterInfo(
                name=p.name,
                kind=p.kind.name.lower(),
                annotation=annotation,
                required=not (variadic or has_default),
                default=repr(p.default) if has_default else None,
            )
        )
    return tuple(out)


def encode_arguments(
    signature: inspect.Signature,
    what: str | Callable[[], str],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    names: tuple[str, ...] | NotPlain | None = None,
) -> Payload:
    """Encode a call's arguments as ``{parameter: value}`` after binding them to ``signature``.

    Defaults are not filled in, so a later change of a default value does not change what
    earlier calls recorded. Raises ``TypeError`` (bad call) or ``SerializationError``.
    ``what`` names the function in messages (a callable is called only for a message);
    ``names`` is :func:`plain_names` of ``signature`` when the caller has it already.
    """
    if names is None:
        names = plain_names(signature)
    if type(names) is tuple:
        if not kwargs and len(args) == len(names):
            # Every parameter passed by position: the common call, bound without inspect.
            return _encode_arguments(dict(zip(names, args, strict=True)), what)
        arguments = _fast_bind(names, args, kwargs)
    else:
        arguments = None
    if arguments is not None:
        return _encode_arguments(arguments, what)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{_what(what)}: {exc}") from None
    arguments = dict(bound.arguments)
    for p in signature.parameters.values():
        if p.name not in arguments:
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            arguments[p.name] = dict(sorted(arguments[p.name].items()))
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            arguments[p.name] = list(arguments[p.name])
    return _encode_arguments(arguments, what)


class NotPlain:
    """Type of :data:`NOT_PLAIN`: a signature with other than plain parameters."""


NOT_PLAIN = NotPlain()
"""What :func:`plain_names` gives for a signature that is not all plain parameters."""


def _what(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def _encode_arguments(arguments: dict[str, Any], what: str | Callable[[], str]) -> Payload:
    try:
        return _serde.encode(arguments)
    except SerializationError as exc:
        raise SerializationError(
            f"the arguments of {_what(what)} cannot be recorded: {exc}"
        ) from None


def plain_names(signature: inspect.Signature) -> tuple[str, ...] | NotPlain:
    """The parameter names if every parameter is a plain positional-or-keyword one, else
    ``NOT_PLAIN``. Definitions compute it once (hashing a ``Signature`` for a cache costs
    more than binding)."""
    params = signature.parameters.values()
    if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return tuple(signature.parameters)
    return NOT_PLAIN


def _fast_bind(
    names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """``signature.bind(...).arguments`` for the common call that passes every parameter of
    a plain signature (``Signature.bind`` costs tens of microseconds); ``None`` otherwise."""
    if len(args) + len(kwargs) != len(names) or len(args) > len(names):
        return None
    arguments = dict(zip(names, args, strict=False))
    for name in names[len(args) :]:
        if name not in kwargs:
            return None
        arguments[name] = kwargs[name]
    return arguments


def decode_arguments(
    signature: inspect.Signature,
    what: str | Callable[[], str],
    payload: Payload | bytes,
    names: tuple[str, ...] | NotPlain | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` to call a function with, from :func:`encode_arguments`' payload.

    ``names`` is :func:`plain_names` of ``signature`` when the caller has it already.
    """
    value = _serde.decode(payload)
    if not isinstance(value, dict):
        raise SerializationError(f"the recorded input of {_what(what)} is not an argument mapping")
    if names is None:
        names = plain_names(signature)
    if type(names) is tuple and len(value) == len(names):
        # Every plain parameter recorded: they are all positional (what binding gives).
        try:
            return tuple([value[name] for name in names]), {}
        except KeyError:
            pass  # another set of names: the checks below say what is wrong
    what = _what(what)
    unknown = [name for name in value if name not in signature.parameters]
    if unknown:
        raise TypeError(
            f"the recorded input of {what} has argument(s) {', '.join(map(repr, unknown))} that "
            "the function no longer takes"
        )
    bound = inspect.BoundArguments(signature, value)
    return bound.args, bound.kwargs
