"""The HTTP app's throughput: ``python -m benchmarks.http [--quick] [--world memory,file]``.

For each world, an Engine and the app ``worldflow serve`` builds (auth on) on a loopback
socket, driven by an aiohttp client with ``--concurrency`` requests in flight:

* **start**: ``POST /v1.0/workflows/dapr/bench_wf/start?instanceID=…`` (a one-step workflow;
  the run is recorded, started and driven in the server);
* **get**: ``GET /v1.0/workflows/dapr/{id}`` of the runs just started.

Reports requests/s and the p50 / p99 latency seen by the client (client and server share one
process and one event loop, so the numbers are a floor for a separate server). Exits non-zero
only when a request fails (a non-2xx answer, a run missing), never for a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from worldflow import Engine, step, workflow
from worldflow.inspector import create_app
from worldflow.worlds import World, open_world

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@step
async def bench_step(n: int) -> int:
    """Double ``n``."""
    return 2 * n


@workflow(name="bench_wf")
async def bench_wf(n: int) -> int:
    """One step."""
    return await bench_step(n)


class Row:
    """One measured operation on one world."""

    def __init__(self, world: str, op: str, latencies: list[float], elapsed: float) -> None:
        self.world = world
        self.op = op
        self.count = len(latencies)
        self.rate = self.count / elapsed if elapsed > 0 else 0.0
        ordered = sorted(latencies)
        self.p50 = statistics.median(ordered) * 1000
        self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def _drive(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[list[float], float]:
    latencies: list[float] = []
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            t0 = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def _expect(response: aiohttp.ClientResponse, status: int) -> None:
    if response.status != status:
        raise AssertionError(
            f"{response.method} {response.url}: {response.status} {await response.text()}"
        )
    await response.read()


async def bench_world(name: str, world: World, count: int, concurrency: int) -> list[Row]:
    """Start ``count`` runs over HTTP, then get each; one :class:`Row` per operation."""
    rows: list[Row] = []
    async with Engine(world, [bench_wf]) as engine:
        runner = web.AppRunner(create_app(engine, token=TOKEN), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1.0/workflows/dapr"
        connector = aiohttp.TCPConnector(limit=concurrency)
        try:
            async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

                async def start(i: int) -> None:
                    url = f"{base}/bench_wf/start?instanceID=b{i}"
                    async with session.post(url, json=i) as r:
                        await _expect(r, 202)

                async def get(i: int) -> None:
                    async with session.get(f"{base}/b{i}") as r:
                        await _expect(r, 200)

                for op, fn in (("start", start), ("get", get)):
                    latencies, elapsed = await _drive(count, concurrency, fn)
                    rows.append(Row(name, op, latencies, elapsed))
        finally:
            await runner.cleanup()
    return rows


async def main_async(worlds: list[str], count: int, concurrency: int) -> list[Row]:
    """Every world's rows."""
    rows: list[Row] = []
    for name in worlds:
        with tempfile.TemporaryDirectory(prefix="wf-http-bench-") as tmp:
            url = "memory://" if name == "memory" else f"file://{Path(tmp) / 'world'}"
            world = await open_world(url)
            try:
                rows.extend(await bench_world(name, world, count, concurrency))
            finally:
                await world.aclose()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few requests (a smoke run)")
    parser.add_argument("--world", default="memory,file", help="memory,file")
    parser.add_argument("--requests", type=int, default=None, help="requests per operation")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args(argv)
    count = args.requests or (50 if args.quick else 2000)
    worlds = [w.strip() for w in args.world.split(",") if w.strip()]
    try:
        rows = asyncio.run(main_async(worlds, count, args.concurrency))
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{'world':<8} {'op':<6} {'requests':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(
            f"{row.world:<8} {row.op:<6} {row.count:>8} {row.rate:>9.0f} "
            f"{row.p50:>8.2f} {row.p99:>8.2f}"
        )
    print(f"(concurrency {args.concurrency}; client and server in one process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
