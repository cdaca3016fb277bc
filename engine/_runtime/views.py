"""What a client is given of a run's log and of a hook: the stored records, payloads decoded.

The world's records (:class:`~worldflow.worlds.AnyEvent`, :class:`~worldflow.worlds.Hook`)
keep payloads as encoded JSON (``msgspec.Raw``) and are the World protocol's business. A
user of :class:`~worldflow.Client` gets :class:`EventInfo` from ``Run.events()`` and
:class:`HookInfo` from ``get_hook_by_token()``: plain values, and names that do not clash
with the workflow-side :class:`worldflow.Hook`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec

from worldflow import _serde
from worldflow.worlds import AnyEvent, Hook, HookStatus

__all__ = ["EventInfo", "HookInfo", "event_info", "hook_info"]

_SHARED: Final = frozenset({"run_id", "seq", "event_id", "created_at", "correlation_id"})


class EventInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a run's log as a client sees it: its payloads decoded.

    Attributes:
        run_id: The run the event belongs to.
        seq: Its place in the run's log (1, 2, ...).
        type: What happened: ``"run_created"``, ``"step_completed"``, ``"hook_received"``...
        created_at: When the world recorded it.
        correlation_id: The step, hook or wait it is about (``None`` for the run's own).
        data: Its other fields by name, each payload (a step's ``input`` and ``result``, a
            hook's ``payload``, the run's ``input``, ``output`` and ``state``...) decoded.

    Example:
        >>> async for event in run.events():  # doctest: +SKIP
        ...     if event.type == "hook_received":
        ...         print(event.data["payload"])
    """

    run_id: str
    seq: int
    type: str
    created_at: datetime
    correlation_id: str | None
    data: dict[str, Any]


class HookInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A hook as a client sees it (``get_hook_by_token``): its metadata decoded.

    Attributes:
        run_id: The run waiting on it.
        hook_id: Its id in that run's log.
        token: What resumes it (``resume_hook(token, payload)``).
        status: ``active`` while its token resolves to it, then ``disposed``.
        created_at: When the workflow created it.
        metadata: What the workflow attached to it (``create_hook(metadata=...)``), decoded.
        is_webhook: Whether it was made by ``create_webhook``.
        received_count: How many payloads it has received.
        disposed_at: When it stopped taking payloads.
    """

    run_id: str
    hook_id: str
    token: str
    status: HookStatus
    created_at: datetime
    metadata: Any
    is_webhook: bool
    received_count: int
    disposed_at: datetime | None


def event_info(event: AnyEvent) -> EventInfo:
    """Decode a stored event's payloads into an :class:`EventInfo`."""
    data: dict[str, Any] = {}
    for name in event.__struct_fields__:
        if name in _SHARED:
            continue
        value = getattr(event, name)
        data[name] = _serde.decode(value) if isinstance(value, msgspec.Raw) else value
    return EventInfo(
        run_id=event.run_id,
        seq=event.seq,
        type=event.type,
        created_at=event.created_at,
        correlation_id=event.correlation_id,
        data=data,
    )


def hook_info(hook: Hook) -> HookInfo:
    """Decode a stored hook's metadata into a :class:`HookInfo`."""
    return HookInfo(
        run_id=hook.run_id,
        hook_id=hook.hook_id,
        token=hook.token,
        status=hook.status,
        created_at=hook.created_at,
        metadata=_serde.decode(hook.metadata),
        is_webhook=hook.is_webhook,
        received_count=hook.received_count,
        disposed_at=hook.disposed_at,
    )
