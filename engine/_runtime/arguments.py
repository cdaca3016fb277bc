"""Checks of the control verbs' arguments (``start``, ``cancel``, ``resume_hook``, ...).

A wrong value is refused at the call with a :class:`TypeError` (wrong type) or
:class:`ValueError` (right type, bad value) that names the argument and says what it takes,
before anything is written. The world checks every event again when it is appended (see
``worldflow.worlds._validation``); these checks exist so the caller hears about its own
argument, in its own words, rather than about an event field it never wrote.

Ids follow the one id rule every world and HTTP API shares
(:func:`worldflow.worlds.id_problem`).
"""

from __future__ import annotations

from typing import Any

from worldflow.worlds._ids import check_id
from worldflow.worlds._validation import (
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE,
    MAX_TEXT_LENGTH,
    name_problem,
)

__all__ = [
    "actor_argument",
    "event_name_argument",
    "id_argument",
    "metadata_argument",
    "optional_id_argument",
    "reason_argument",
]


def id_argument(value: Any, what: str) -> str:
    """``value`` as an id (a run id, a token), or TypeError / ValueError naming ``what``."""
    return check_id(value, what)


def optional_id_argument(value: Any, what: str) -> str | None:
    """Like :func:`id_argument`, with ``None`` allowed."""
    return None if value is None else check_id(value, what)


def metadata_argument(metadata: Any) -> dict[str, str]:
    """Run metadata: a dict of str to str, within the world's limits (a copy of it)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError(
            f"metadata must be a dict of str to str (it is searchable, like Dapr's "
            f"dapr-workflow-metadata headers), got {metadata!r:.100}"
        )
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise ValueError(
            f"metadata has {len(metadata)} entries; the limit is {MAX_METADATA_ENTRIES}"
        )
    for key, value in metadata.items():
        problem = name_problem(key)
        if problem is not None:
            raise ValueError(f"metadata key {key!r:.60} {problem}")
        if len(value) > MAX_METADATA_VALUE:
            raise ValueError(
                f"metadata[{key!r}] is {len(value)} characters long; the limit is "
                f"{MAX_METADATA_VALUE}"
            )
        _encodable(key, f"metadata key {key!r:.60}")
        _encodable(value, f"metadata[{key!r:.60}]")
    return dict(metadata)


def reason_argument(reason: Any) -> str | None:
    """A cancel or suspend reason: ``None`` or a str the world can store."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise TypeError(
            f"reason must be a str or None, not {type(reason).__name__} ({reason!r:.60})"
        )
    if len(reason) > MAX_TEXT_LENGTH:
        raise ValueError(f"reason is {len(reason)} characters long; the limit is {MAX_TEXT_LENGTH}")
    _encodable(reason, "reason")
    return reason


def actor_argument(actor: Any) -> str | None:
    """Who asked for a control action, as its event records it: ``None`` or a short
    one-line name (``"alice"``, ``"inspector session 1a2b"``)."""
    if actor is None:
        return None
    if not isinstance(actor, str):
        raise TypeError(f"actor must be a str or None, not {type(actor).__name__} ({actor!r:.60})")
    name: str = actor.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise ValueError(f"actor must be a short printable one-line name, not {actor!r:.60}")
    return name


def event_name_argument(name: Any) -> str:
    """The name of an event raised for a run (``raise_event``) or a step (``resume_step``)."""
    if not isinstance(name, str):
        raise TypeError(f"an event name must be a str, not {type(name).__name__} ({name!r:.60})")
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"the event name {name!r:.60} {problem}")
    _encodable(name, "the event name")
    return name


def _encodable(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} holds {text[exc.start : exc.end]!r} at position {exc.start}, which cannot "
            "be stored (a lone surrogate: decode the text it came from with errors='replace')"
        ) from None
