"""One workflow, ``golden.pricing``, in the versions a team would deploy while runs are in
flight. Every version registers under the same name; a test picks the one "deployed".

* ``pricing_v1``: quote, wait for approval, ship, wait for the delivery. The histories
  ``pricing-v1-*.jsonl`` were recorded with it, before the change.
* ``pricing_naive``: the change made without ``patched()`` (a discount step after the
  approval): runs recorded by v1 do not replay against it.
* ``pricing_v2``: the same change behind ``patched("discount")``. ``pricing-v2-*.jsonl``
  were recorded with it.
* ``pricing_v3``: the old branch removed, ``deprecate_patch("discount")`` left in.
* ``fanout_v1`` / ``fanout_v2``: three tasks of a ``gather`` each ask ``patched("fast-path")``,
  at different points of their own progress.
"""

from __future__ import annotations

import asyncio
from typing import Any

from worldflow import WorkflowFunction, create_hook, deprecate_patch, patched, step, workflow

__all__ = ["VERSIONS"]

CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@step(name="golden.quote")
async def quote(item: str) -> int:
    _count("quote")
    return 100 * len(item)


@step(name="golden.discount")
async def discount(price: int) -> int:
    _count("discount")
    return price - price // 10


@step(name="golden.ship")
async def ship(item: str, price: int) -> str:
    _count("ship")
    return f"{item} shipped at {price}"


@step(name="golden.work")
async def work(lane: str, n: int) -> str:
    _count(f"work-{lane}")
    return f"{lane}{n}"


async def _deliver(item: str, price: int) -> str:
    receipt = await ship(item, price)
    await create_hook(token=f"delivered:{item}")
    return receipt


def _pricing(version: str) -> WorkflowFunction[..., Any]:
    async def v1(item: str) -> str:
        price = await quote(item)
        await create_hook(token=f"approve:{item}")
        return await _deliver(item, price)

    async def naive(item: str) -> str:
        price = await quote(item)
        await create_hook(token=f"approve:{item}")
        price = await discount(price)
        return await _deliver(item, price)

    async def v2(item: str) -> str:
        price = await quote(item)
        await create_hook(token=f"approve:{item}")
        if patched("discount"):
            price = await discount(price)
        return await _deliver(item, price)

    async def v3(item: str) -> str:
        price = await quote(item)
        await create_hook(token=f"approve:{item}")
        deprecate_patch("discount")
        price = await discount(price)
        return await _deliver(item, price)

    body = {"v1": v1, "naive": naive, "v2": v2, "v3": v3}[version]
    body.__qualname__ = body.__name__ = f"pricing_{version}"
    return workflow(name="golden.pricing")(body)


def _fanout(version: str) -> WorkflowFunction[..., Any]:
    async def lane(name: str, before: int) -> list[str]:
        done = [await work(name, i) for i in range(before)]
        if version == "v2" and patched("fast-path"):
            done.append(await work(name, 99))
        return done

    async def fanout(n: int) -> list[list[str]]:
        # "a" asks at once, "b" after one step, "c" after two: who asks first depends on
        # nothing but the deterministic order of the workflow's own loop.
        return list(await asyncio.gather(lane("a", 0), lane("b", 1), lane("c", n)))

    fanout.__qualname__ = fanout.__name__ = f"fanout_{version}"
    return workflow(name="golden.fanout")(fanout)


pricing_v1 = _pricing("v1")
pricing_naive = _pricing("naive")
pricing_v2 = _pricing("v2")
pricing_v3 = _pricing("v3")
fanout_v1 = _fanout("v1")
fanout_v2 = _fanout("v2")

VERSIONS = {
    "pricing_v1": pricing_v1,
    "pricing_naive": pricing_naive,
    "pricing_v2": pricing_v2,
    "pricing_v3": pricing_v3,
    "fanout_v1": fanout_v1,
    "fanout_v2": fanout_v2,
}
