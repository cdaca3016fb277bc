"""Flow-control options: :class:`Concurrency` and :class:`RateLimit` for workflows and steps.

::

    @workflow(concurrency=Concurrency(1, key="customer_id"))      # one run per customer
    async def sync_account(customer_id: str) -> None: ...

    @step(concurrency=4, rate_limit=RateLimit(100, period="1m"))  # across every engine
    async def call_partner_api(order_id: str) -> dict: ...

The limits are held by the world (its ``FlowControl`` role), so they bind every engine on it,
in any number of processes. This module only reads the options and turns a call into the
permits it needs (:class:`PermitAsk`); ``worldflow._runtime.flow`` asks the world for them.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from worldflow._durations import Duration, parse_duration

__all__ = ["RESOURCE_ID", "Concurrency", "FlowLimits", "PermitAsk", "RateLimit", "flow_limits"]

RESOURCE_ID: Final = "@resource_id"
"""A ``key=`` that means the run's ``resource_id`` (what ``start(..., resource_id=)`` gave)
rather than an argument: ``Concurrency(1, key=RESOURCE_ID)`` is one run per resource."""

_MAX_VALUE = 200  # key values longer than this are hashed (a permit key is at most 512)


def _check_limit(limit: object, what: str) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{what}: the limit must be an int >= 1, got {limit!r}")


def _check_key(key: object, what: str) -> None:
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"{what}: key= names a parameter (or is RESOURCE_ID), got {key!r}")


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` at once, across every engine on the world.

    Args:
        limit: How many may run at once (per key value, with ``key``).
        key: Count separately per value of this parameter (``"customer_id"``), or per run
            resource id (:data:`RESOURCE_ID`); ``None`` counts every call together.

    On a workflow it counts runs from their start to their end (a sleeping run holds its
    place); on a step it counts attempts while they execute.
    """

    limit: int
    key: str | None = None

    def __post_init__(self) -> None:
        _check_limit(self.limit, "Concurrency")
        _check_key(self.key, "Concurrency")


@dataclass(frozen=True, init=False)
class RateLimit:
    """At most ``limit`` starts within any ``period``, across every engine on the world.

    Args:
        limit: How many may start per period (per key value, with ``key``).
        period: The window: seconds, ``"1m"``, a ``timedelta``.
        key: As for :class:`Concurrency`.

    Over the limit, a call waits (it is not dropped) until the window lets it in. On a
    workflow it counts run starts; on a step, attempts.
    """

    limit: int
    period: timedelta
    key: str | None = None

    def __init__(self, limit: int, period: Duration, key: str | None = None) -> None:
        _check_limit(limit, "RateLimit")
        _check_key(key, "RateLimit")
        window = parse_duration(period)
        if window <= timedelta(0):
            raise ValueError(f"RateLimit: the period must be positive, got {period!r}")
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "period", window)
        object.__setattr__(self, "key", key)


@dataclass(frozen=True)
class PermitAsk:
    """One permit a call needs: the world key, the holder, and the limit to ask with."""

    key: str
    holder: str
    limit: int
    period: float | None = None


@dataclass(frozen=True)
class FlowLimits:
    """The flow-control options of one workflow or step, checked against its signature."""

    kind: str  # "run" or "step": the permit keys' prefix
    name: str
    signature: inspect.Signature
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    _needs_arguments: bool = field(default=False, repr=False)

    def asks(
        self,
        holder: str,
        args: tuple[Any, ...] | None,
        kwargs: dict[str, Any] | None,
        *,
        resource_id: str | None,
        concurrency: bool = True,
        rate: bool = True,
        attempt: int = 0,
    ) -> list[PermitAsk]:
        """The permits for one call (concurrency first, then rate), keyed as configured.

        ``args`` / ``kwargs`` are the call's decoded arguments (needed when a key names a
        parameter, see :attr:`needs_arguments`). A rate permit's holder adds ``attempt``,
        so each attempt of a step counts against the rate.
        """
        out: list[PermitAsk] = []
        bound = None
        if self._needs_arguments and args is not None:
            bound = self.signature.bind(*args, **(kwargs or {}))
            bound.apply_defaults()
        if concurrency and self.concurrency is not None:
            key = self._key("", self.concurrency.key, bound, resource_id)
            out.append(PermitAsk(key=key, holder=holder, limit=self.concurrency.limit))
        if rate and self.rate_limit is not None:
            key = self._key("-rate", self.rate_limit.key, bound, resource_id)
            out.append(
                PermitAsk(
                    key=key,
                    holder=f"{holder}#{attempt}" if attempt else holder,
                    limit=self.rate_limit.limit,
                    period=self.rate_limit.period.total_seconds(),
                )
            )
        return out

    @property
    def needs_arguments(self) -> bool:
        """Whether a key names a parameter (so the call's arguments must be decoded)."""
        return self._needs_arguments

    def _key(
        self, suffix: str, key: str | None, bound: inspect.BoundArguments | None, rid: str | None
    ) -> str:
        base = f"{self.kind}{suffix}:{self.name}"
        if key is None:
            return base
        if key == RESOURCE_ID:
            value = "" if rid is None else rid
        else:
            found = None if bound is None else bound.arguments.get(key)
            value = found if isinstance(found, str) else repr(found)
        if len(value) > _MAX_VALUE:
            value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        return f"{base}|{key}={value}"


def flow_limits(
    kind: str,
    name: str,
    signature: inspect.Signature,
    concurrency: int | Concurrency | None,
    rate_limit: RateLimit | None,
    what: str,
) -> FlowLimits | None:
    """Read ``concurrency=`` / ``rate_limit=`` of a decorator (``None``: no limits).

    Raises:
        ValueError: a bad limit, or a key that names no parameter.
        TypeError: an option of the wrong type.
    """
    if concurrency is not None and not isinstance(concurrency, Concurrency):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(
                f"{what}(concurrency=...) is an int or a Concurrency, not {concurrency!r}"
            )
        if concurrency < 1:
            raise ValueError(
                f"{what}(concurrency=...) must be None or an int >= 1, got {concurrency!r}"
            )
        concurrency = Concurrency(concurrency)
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise TypeError(f"{what}(rate_limit=...) is a RateLimit, not {rate_limit!r}")
    if concurrency is None and rate_limit is None:
        return None
    needs = False
    for option in (concurrency, rate_limit):
        key = None if option is None else option.key
        if key is None or key == RESOURCE_ID:
            continue
        if key not in signature.parameters:
            params = ", ".join(signature.parameters) or "none"
            raise ValueError(
                f"{what} {name!r}: key={key!r} names no parameter (it has: {params}); "
                "use a parameter's name, or RESOURCE_ID for the run's resource id"
            )
        needs = True
    return FlowLimits(
        kind=kind,
        name=name,
        signature=signature,
        concurrency=concurrency,
        rate_limit=rate_limit,
        _needs_arguments=needs,
    )
