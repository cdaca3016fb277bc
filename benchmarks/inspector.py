"""The inspector's budgets: ``python -m benchmarks.inspector [--quick] [--world memory,file]``.

* The runs list over 100,000 runs: a page of 50 in <= 150 ms of server time.
* A 10,000-event run's page: first rows in <= 1.5 s, <= 1 MB of HTML.
* A live run page keeps up with 100 events a second (the lag from an append to the update
  that carries it stays bounded: updates are coalesced, at most four a second).

Runs are written straight into the world (``run_created`` ... ``run_completed``; a 10k-event
run of 2,500 steps with three events each), then the pages are fetched over a loopback socket
from the app ``worldflow serve`` builds. The time is taken inside the server (a middleware
around the handler), so client and socket costs are left out; a run is started before each
load, so the counts by status are computed afresh every time, as on a busy world. Prints a
table and exits non-zero only when a page is wrong (an error status, missing rows), never for
a time.
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
from typing import Any, cast

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from worldflow import Engine
from worldflow.inspector import ControlPlane, create_app
from worldflow.worlds import (
    AnyEvent,
    RunCompleted,
    RunCreated,
    RunStarted,
    StepCompleted,
    StepCreated,
    StepStarted,
    World,
    open_world,
)

RAW = msgspec.Raw(b'{"order": 1}')
LIST_BUDGET_MS = 150.0
RUN_BUDGET_MS = 1500.0
RUN_HTML_BUDGET = 1024 * 1024


async def seed_runs(world: World, count: int) -> None:
    """``count`` finished runs of three workflows, appended in concurrent batches."""

    async def one(i: int) -> None:
        rid = f"bench-{i:06}"
        events: list[AnyEvent] = [
            RunCreated(
                run_id=rid,
                workflow_name=f"bench:flow_{i % 3}",
                input=RAW,
                metadata={"tenant": f"t{i % 7}"},
            ),
            RunStarted(run_id=rid),
        ]
        if i % 4:
            events.append(RunCompleted(run_id=rid, output=RAW))
        await world.append(rid, events)

    step = 500
    for start in range(0, count, step):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + step))))


async def seed_big_run(world: World, events: int) -> str:
    """One run with ``events`` events: steps created, started, completed."""
    rid = "bench-big"
    await world.append(
        rid, [RunCreated(run_id=rid, workflow_name="bench:big", input=RAW), RunStarted(run_id=rid)]
    )
    steps = (events - 3) // 3
    batch: list[AnyEvent] = []
    for i in range(steps):
        sid = f"step_{i:06}"
        batch += [
            StepCreated(
                run_id=rid, correlation_id=sid, step_name=f"bench:part_{i % 40}", input=RAW
            ),
            StepStarted(run_id=rid, correlation_id=sid),
            StepCompleted(run_id=rid, correlation_id=sid, result=RAW),
        ]
        if len(batch) >= 600:
            await world.append(rid, batch)
            batch = []
    batch.append(RunCompleted(run_id=rid, output=RAW))
    await world.append(rid, batch)
    return rid


def timing_middleware(samples: list[float]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def timed(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            samples.append((time.perf_counter() - started) * 1000)

    return timed


async def measure(world_name: str, runs: int, events: int, repeat: int) -> list[dict[str, Any]]:
    """Seed a world and fetch the pages; one result row per page."""
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if world_name == "memory" else f"file://{Path(tmp) / 'world'}"
        world = await open_world(url)
        try:
            t0 = time.perf_counter()
            await seed_runs(world, runs)
            rid = await seed_big_run(world, events)
            seeded = time.perf_counter() - t0
            async with Engine(world, recover=False, consume_queues=False) as engine:
                samples: list[float] = []
                app = create_app(cast(ControlPlane, engine))
                app.middlewares.insert(0, timing_middleware(samples))
                client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
                await client.start_server()
                try:
                    rows = []
                    for label, path, budget_ms, check in (
                        ("runs list, page 1", "/", LIST_BUDGET_MS, 'id="run-bench-'),
                        (
                            "runs list, running",
                            "/?status=running&limit=50",
                            LIST_BUDGET_MS,
                            'id="run-bench-',
                        ),
                        (f"run page, {events} events", f"/runs/{rid}", RUN_BUDGET_MS, 'id="ev-'),
                    ):
                        await client.get(path)  # compiles the templates
                        samples.clear()
                        size = 0
                        for n in range(repeat):
                            # the world changes between loads (as it does in use), so the
                            # counts by status are computed again each time
                            fresh = f"bench-new-{label}-{n}"
                            await world.append(
                                fresh,
                                [RunCreated(run_id=fresh, workflow_name="bench:flow_0", input=RAW)],
                            )
                            resp = await client.get(path)
                            body = await resp.read()
                            if resp.status != 200 or check.encode() not in body:
                                raise SystemExit(f"{world_name} {label}: HTTP {resp.status}")
                            size = len(body)
                        rows.append(
                            {
                                "world": world_name,
                                "page": label,
                                "runs": runs,
                                "p50_ms": statistics.median(samples),
                                "max_ms": max(samples),
                                "budget_ms": budget_ms,
                                "html_bytes": size,
                                "seed_s": seeded,
                            }
                        )
                    return rows
                finally:
                    await client.close()
        finally:
            await world.aclose()


async def measure_live(world_name: str, seconds: float = 3.0, rate: int = 100) -> dict[str, Any]:
    """A run page's live stream while its run grows by ``rate`` events a second: how far the
    page lags behind the log (the time from an append to the update that carries it)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if world_name == "memory" else f"file://{Path(tmp) / 'world'}"
        world = await open_world(url)
        try:
            rid = await seed_big_run(world, 1_000)
            await world.append(
                rid + "-live",
                [
                    RunCreated(run_id=rid + "-live", workflow_name="bench:big", input=RAW),
                    RunStarted(run_id=rid + "-live"),
                ],
            )
            rid += "-live"
            async with Engine(world, recover=False, consume_queues=False) as engine:
                app = create_app(cast(ControlPlane, engine))
                client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
                await client.start_server()
                appended: dict[int, float] = {}
                lags: list[float] = []
                updates = 0
                try:
                    resp = await client.get(f"/runs/{rid}/live?last=2")

                    async def read() -> None:
                        nonlocal updates
                        while True:
                            line = await resp.content.readline()
                            if not line:
                                return
                            if line.startswith(b"id: "):
                                seq = int(line[4:])
                                updates += 1
                                now = time.perf_counter()
                                lags.extend(now - t for s, t in list(appended.items()) if s <= seq)
                                for s in [s for s in appended if s <= seq]:
                                    del appended[s]

                    reader = asyncio.create_task(read())
                    started = time.perf_counter()
                    i = 0
                    while (elapsed := time.perf_counter() - started) < seconds:
                        # keep to the rate on average, however long the server held the loop
                        due = int(elapsed * rate / 2) - i
                        events: list[AnyEvent] = []
                        for _ in range(max(0, due)):
                            sid = f"live_{i}"
                            i += 1
                            events += [
                                StepCreated(
                                    run_id=rid,
                                    correlation_id=sid,
                                    step_name="bench:live",
                                    input=RAW,
                                ),
                                StepStarted(run_id=rid, correlation_id=sid),
                            ]
                        if events:
                            result = await world.append(rid, events)
                            appended[result.events[-1].seq] = time.perf_counter()
                        await asyncio.sleep(0.02)
                    await world.append(rid, [RunCompleted(run_id=rid, output=RAW)])
                    await asyncio.wait_for(reader, 30)
                finally:
                    await client.close()
                return {
                    "world": world_name,
                    "events": i * 2,
                    "rate": rate,
                    "updates": updates,
                    "lag_p50_ms": statistics.median(lags) * 1000 if lags else float("nan"),
                    "lag_max_ms": max(lags) * 1000 if lags else float("nan"),
                }
        finally:
            await world.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inspector")
    parser.add_argument("--quick", action="store_true", help="2,000 runs, a 1,000-event run")
    parser.add_argument("--world", default="memory,file")
    args = parser.parse_args(argv)
    runs, events, repeat = (2_000, 1_000, 3) if args.quick else (100_000, 10_000, 10)
    results = []
    live = []
    for name in [w.strip() for w in args.world.split(",") if w.strip()]:
        results += asyncio.run(measure(name, runs, events, repeat))
        live.append(asyncio.run(measure_live(name, seconds=1.0 if args.quick else 5.0)))
    print(f"{'world':<8} {'page':<26} {'p50 ms':>8} {'max ms':>8} {'budget':>8} {'HTML':>10}")
    for r in results:
        within = "ok" if r["p50_ms"] <= r["budget_ms"] else "OVER"
        print(
            f"{r['world']:<8} {r['page']:<26} {r['p50_ms']:>8.1f} {r['max_ms']:>8.1f} "
            f"{r['budget_ms']:>6.0f} {within:<3}{r['html_bytes'] / 1024:>7.0f} KB"
        )
    print(f"\n{'world':<8} {'live page at':<14} {'updates':>8} {'lag p50':>9} {'lag max':>9}")
    for r in live:
        print(
            f"{r['world']:<8} {str(r['rate']) + ' events/s':<14} {r['updates']:>8} "
            f"{r['lag_p50_ms']:>6.0f} ms {r['lag_max_ms']:>6.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
