"""Take the README's inspector screenshots: ``python -m tools.inspector_screenshots``.

Runs a few demo workflows on a memory world (retries, parallel steps, a sleep, a hook, a
child run, failures and cancellations), serves ``create_app`` on a loopback port and has
Debian's headless Chromium (``/usr/bin/chromium``) photograph the runs list and a run page
into ``docs/``.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from playwright.async_api import async_playwright

from worldflow import (
    Engine,
    FatalError,
    create_hook,
    get_step_metadata,
    sleep,
    step,
    workflow,
)
from worldflow.inspector import ControlPlane, create_app
from worldflow.worlds import MemoryWorld

DOCS = Path(__file__).resolve().parent.parent / "docs"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@step(max_retries=4, backoff="150ms")
async def charge_card(order_id: str, amount: int) -> dict[str, Any]:
    """Charge the customer; the payment provider times out twice."""
    await asyncio.sleep(0.05)
    if get_step_metadata().attempt < 3:
        raise TimeoutError("payment provider did not answer in 30 s")
    return {"charge_id": f"ch_{order_id}", "amount": amount}


@step
async def reserve(item: str) -> str:
    await asyncio.sleep(random.uniform(0.08, 0.25))
    return f"reserved {item}"


@step
async def notify(order_id: str) -> None:
    await asyncio.sleep(0.03)


@step(max_retries=0)
async def validate(order_id: str, amount: int) -> None:
    if amount > 900:
        raise FatalError(f"amount {amount} is over the limit for order {order_id}")


@workflow
async def checkout(order_id: str, amount: int, items: list[str]) -> dict[str, Any]:
    """Charge the card, reserve every item at once, wait for a manager's approval."""
    await validate(order_id, amount)
    charge = await charge_card(order_id, amount)
    reserved = await asyncio.gather(*(reserve(i) for i in items))
    await sleep(0.4)
    approval = await create_hook(token=f"approve:{order_id}")
    await notify(order_id)
    return {"charge": charge, "reserved": reserved, "approval": approval}


async def main() -> None:
    world = MemoryWorld()
    async with Engine(world, [checkout]) as engine:
        runs = []
        for i in range(14):
            amount = [120, 45, 980, 310][i % 4]
            items = ["book", "lamp", "desk"][: 1 + i % 3]
            runs.append(
                await engine.start(
                    checkout,
                    f"o-{1000 + i}",
                    amount,
                    items,
                    run_id=f"order-{1000 + i}",
                    resource_id=f"customer-{i % 5}",
                    metadata={"region": ["eu", "us"][i % 2]},
                )
            )
        await asyncio.sleep(2.5)
        for i in (0, 1, 4, 5, 8):
            await engine.resume_hook(f"approve:o-{1000 + i}", {"approved_by": "ana"})
        await engine.cancel("order-1009", "customer asked to cancel")
        await engine.suspend("order-1013", "waiting for stock audit")
        await asyncio.sleep(0.5)
        app = create_app(cast(ControlPlane, engine))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = await browser.new_page(viewport={"width": 1360, "height": 860})
            await page.goto(base + "/")
            await page.screenshot(path=str(DOCS / "inspector-runs.png"))
            await page.goto(base + "/runs/order-1011")
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(DOCS / "inspector-run.png"), full_page=True)
            await browser.close()
        await runner.cleanup()
    await world.aclose()


if __name__ == "__main__":
    asyncio.run(main())
