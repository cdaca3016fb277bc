"""The workloads, by name; W1-W4 and W8 are here, run in this process on one world each.

W5 (crash recovery, ``_recovery``) and W7 (10,000 parked runs, ``_scale``) run in child
processes; W6 (replay cost) is in ``_replay``. Every workload checks its own results (right
value, nothing lost, nothing recorded twice); timing never decides success.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import _flows
from benchmarks._audit import audit_runs, wait_until_parked
from benchmarks._measure import (
    Outcome,
    append_statements,
    disk_syncs,
    peak_rss_during,
    percentile,
    queries,
    stopwatch,
)
from benchmarks._recovery import w5_recovery
from benchmarks._replay import w6_replay
from benchmarks._resumer import w3_cross_process
from benchmarks._scale import w7_scale
from benchmarks._worlds import Cell
from worldflow import Engine

__all__ = ["WORKLOADS", "Cell", "Workload"]

_WORKFLOWS = (_flows.chain, _flows.one_step, _flows.wait_hook, _flows.fan_out)
_RESULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Workload:
    """A workload: how to run it once, whether to repeat it, which worlds it needs."""

    run: Callable[[Cell], Awaitable[Outcome]]
    repeated: bool = False
    """Run ``Sizes.repeats`` times (each on a fresh world) and keep the median figures."""
    durable_only: bool = False
    """Only on worlds that outlive a process (W5 kills one)."""

    def __call__(self, cell: Cell) -> Awaitable[Outcome]:
        return self.run(cell)


def _key() -> str:
    """A prefix for run ids and hook tokens, so workloads never meet on a shared world."""
    return uuid.uuid4().hex[:10]


async def w1_throughput(cell: Cell) -> Outcome:
    """1,000 runs of a 3-step chain, at most 100 in flight: runs/s, steps/s, peak RSS."""
    sizes, outcome, key = cell.sizes, Outcome(), _key()
    async with cell.fresh_world() as world:
        async with Engine(world=world, workflows=_WORKFLOWS) as engine:
            gate = asyncio.Semaphore(sizes.w1_in_flight)

            async def one(i: int) -> Any:
                async with gate:
                    run = await engine.start(
                        _flows.chain, i, sizes.w1_steps, run_id=f"w1-{key}-{i}"
                    )
                    return await run.result(timeout=_RESULT_TIMEOUT)

            syncs, statements = disk_syncs(world), append_statements(world)
            sent = queries(world)
            async with peak_rss_during() as rss:
                with stopwatch() as sw:
                    results = await asyncio.gather(*(one(i) for i in range(sizes.w1_runs)))
            syncs = _delta(syncs, disk_syncs(world))
            statements = _delta(statements, append_statements(world))
            sent = _delta(sent, queries(world))
        outcome.figures = {
            "runs_per_s": sizes.w1_runs / sw.elapsed,
            "steps_per_s": sizes.w1_runs * sizes.w1_steps / sw.elapsed,
            "peak_rss_mib": rss.peak_mib,
            "rss_growth_mib": rss.growth_mib,
        }
        if syncs is not None:
            outcome.figures["syncs_per_step"] = syncs / (sizes.w1_runs * sizes.w1_steps)
        steps = sizes.w1_runs * sizes.w1_steps
        if statements is not None:
            outcome.figures["statements_per_step"] = statements / steps
        if sent is not None:
            outcome.figures["queries_per_step"] = sent / steps
        outcome.check_equal(
            "results right", results, [i + sizes.w1_steps for i in range(sizes.w1_runs)]
        )
        await audit_runs(
            outcome, world, [f"w1-{key}-{i}" for i in range(sizes.w1_runs)], sizes.w1_steps
        )
    return outcome


async def w2_latency(cell: Cell) -> Outcome:
    """A 1-step workflow started 200 times in sequence: p50 / p99 from start() to result."""
    sizes, outcome, key = cell.sizes, Outcome(), _key()
    async with cell.fresh_world() as world:
        async with Engine(world=world, workflows=_WORKFLOWS) as engine:
            latencies, results = [], []
            syncs, statements = disk_syncs(world), append_statements(world)
            sent = queries(world)
            for i in range(sizes.w2_runs):
                with stopwatch() as sw:
                    run = await engine.start(_flows.one_step, i, run_id=f"w2-{key}-{i}")
                    results.append(await run.result(timeout=_RESULT_TIMEOUT))
                latencies.append(sw.elapsed)
            syncs = _delta(syncs, disk_syncs(world))
            statements = _delta(statements, append_statements(world))
            sent = _delta(sent, queries(world))
        outcome.figures = _latencies(latencies)
        if syncs is not None:
            outcome.figures["syncs_per_run"] = syncs / sizes.w2_runs
        if statements is not None:
            outcome.figures["statements_per_run"] = statements / sizes.w2_runs
        if sent is not None:
            outcome.figures["queries_per_run"] = sent / sizes.w2_runs
        outcome.check_equal("results right", results, [i + 1 for i in range(sizes.w2_runs)])
        await audit_runs(outcome, world, [f"w2-{key}-{i}" for i in range(sizes.w2_runs)], 1)
    return outcome


async def w3_hook(cell: Cell) -> Outcome:
    """A workflow parked on a hook, 200 times: p50 / p99 from resume_hook() to result; on a
    world processes share, again with the hooks resumed from another process."""
    sizes, outcome, key = cell.sizes, Outcome(), _key()
    async with cell.fresh_world() as world:
        async with Engine(world=world, workflows=_WORKFLOWS) as engine:
            latencies, results = [], []
            syncs: int | None = 0
            sent: int | None = 0
            for i in range(sizes.w3_runs):
                token = f"w3-{key}-{i}"
                run = await engine.start(_flows.wait_hook, token, i, run_id=token)
                await wait_until_parked(world, token, timeout=_RESULT_TIMEOUT)
                before, sent_before = disk_syncs(world), queries(world)
                with stopwatch() as sw:
                    await engine.resume_hook(token, 1)
                    results.append(await run.result(timeout=_RESULT_TIMEOUT))
                latencies.append(sw.elapsed)
                after = _delta(before, disk_syncs(world))
                syncs = None if syncs is None or after is None else syncs + after
                more = _delta(sent_before, queries(world))
                sent = None if sent is None or more is None else sent + more
        outcome.figures = _latencies(latencies)
        if syncs is not None:
            outcome.figures["syncs_per_resume"] = syncs / sizes.w3_runs
        if sent is not None:
            outcome.figures["queries_per_resume"] = sent / sizes.w3_runs
        outcome.check_equal("results right", results, [i + 1 for i in range(sizes.w3_runs)])
        await audit_runs(outcome, world, [f"w3-{key}-{i}" for i in range(sizes.w3_runs)], 0)
    if cell.world.shared:  # and resumed from another process than the run's owner
        other = await w3_cross_process(cell)
        outcome.figures.update(other.figures)
        outcome.checks.extend(other.checks)
    return outcome


async def w4_fanout(cell: Cell) -> Outcome:
    """One run that gathers 500 steps and sums them: wall time from start() to result."""
    sizes, outcome, key = cell.sizes, Outcome(), _key()
    async with cell.fresh_world() as world:
        async with Engine(world=world, workflows=_WORKFLOWS) as engine:
            syncs, statements = disk_syncs(world), append_statements(world)
            sent = queries(world)
            with stopwatch() as sw:
                run = await engine.start(_flows.fan_out, sizes.w4_width, run_id=f"w4-{key}")
                total = await run.result(timeout=_RESULT_TIMEOUT)
            syncs = _delta(syncs, disk_syncs(world))
            statements = _delta(statements, append_statements(world))
            sent = _delta(sent, queries(world))
        outcome.figures = {"wall_ms": sw.elapsed * 1000}
        if statements is not None:
            outcome.figures["statements_per_run"] = statements
        if sent is not None:
            outcome.figures["queries_per_run"] = sent
        if syncs is not None:
            outcome.figures["syncs_per_run"] = syncs
        outcome.check_equal("results right", total, sum(range(sizes.w4_width)))
        await audit_runs(outcome, world, [f"w4-{key}"], sizes.w4_width)
    return outcome


async def w8_timers(cell: Cell) -> Outcome:
    """5,000 runs sleeping 1 s at once on an engine caching 1,000: wall time, rebuilds.

    More runs wait on timers than the cache holds: a policy that evicts runs whose timers are
    due soon rebuilds each of them from its log when its timer fires (a thrash).
    """
    sizes, outcome, key = cell.sizes, Outcome(), _key()
    async with cell.fresh_world() as world:
        async with Engine(
            world=world, workflows=[_flows.napper], max_cached_runs=sizes.w8_cached
        ) as engine:
            with stopwatch() as sw:
                runs = await asyncio.gather(
                    *(
                        engine.start(_flows.napper, i, sizes.w8_sleep, run_id=f"w8-{key}-{i}")
                        for i in range(sizes.w8_runs)
                    )
                )
                results = await asyncio.gather(
                    *(run.result(timeout=_RESULT_TIMEOUT) for run in runs)
                )
            outcome.figures = {
                "wall_s": sw.elapsed,
                "rebuilds_per_run": engine.driver.replays / sizes.w8_runs,
            }
        outcome.check_equal("results right", results, list(range(sizes.w8_runs)))
        await audit_runs(outcome, world, [f"w8-{key}-{i}" for i in range(sizes.w8_runs)], 0)
    return outcome


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


def _latencies(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
    }


WORKLOADS: dict[str, Workload] = {
    "W1": Workload(w1_throughput, repeated=True),
    "W2": Workload(w2_latency, repeated=True),
    "W3": Workload(w3_hook, repeated=True),
    "W4": Workload(w4_fanout, repeated=True),
    "W5": Workload(w5_recovery, durable_only=True),
    "W6": Workload(w6_replay),
    "W7": Workload(w7_scale),
    "W8": Workload(w8_timers),
}
