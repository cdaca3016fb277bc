"""W6 replay cost: runs with 10, 100, 1,000 and 10,000 events in their log.

For each size a run of ``long_chain`` does enough sequential steps to reach that many events
and parks on a hook. Two figures per size:

* ``live_us_per_event@N``: while the run is live, the median time between consecutive steps
  near the end of the log, divided by the events one step adds. The engine keeps the instance
  in memory and feeds it only new events, so this must not grow with the log.
* ``rebuild_ms@N``: the run's cached instance is evicted, then one drive rebuilds it from the
  log (read every event, replay them into a fresh instance); the engine's replay counter must
  show exactly one replay. Median of three. The world's own caches stay warm: this is the
  engine's cost, as after an eviction, not a cold start's disk reads.

``live_cost_growth`` is the live cost at the largest size over that at the smallest.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import uuid

from benchmarks import _flows
from benchmarks._audit import audit_runs, wait_until_parked
from benchmarks._measure import Outcome, stopwatch
from benchmarks._worlds import Cell
from worldflow import Engine

__all__ = ["w6_replay"]

_LIVE_SAMPLES = 100
"""Step-to-step intervals per size (small sizes use several runs to get them)."""
_REBUILDS = 3
"""Rebuilds timed per size; the median is kept."""
_TIMEOUT = 300.0
_EVICT_WAIT = 5.0


async def _park(engine: Engine, token: str, steps: int) -> int:
    """Start a ``steps``-step ``long_chain`` parked on hook ``token``; its log length."""
    await engine.start(_flows.long_chain, token, steps, token, run_id=token)
    await wait_until_parked(engine.world, token, timeout=_TIMEOUT)
    return (await engine.world.get_run(token)).last_seq


async def _finish(engine: Engine, outcome: Outcome, token: str, steps: int) -> None:
    await engine.resume_hook(token, 1)
    result = await (await engine.get_run(token)).result(timeout=_TIMEOUT)
    outcome.check_equal("results right", result, steps + 1)


async def _evict(engine: Engine, run_id: str) -> None:
    """Drop the run's cached instance, waiting out the tail of the drive that parked it."""
    async with asyncio.timeout(_EVICT_WAIT):
        # The engine signals nothing when a drive ends (evict keeps runs being driven), so
        # give the loop a turn until the drive that appended hook_created has let go.
        while not engine.evict(run_id):  # noqa: ASYNC110
            await asyncio.sleep(0)


async def w6_replay(cell: Cell) -> Outcome:
    """Run W6 on ``cell.world``; return its figures and checks."""
    outcome, key = Outcome(), uuid.uuid4().hex[:10]
    live: dict[int, float] = {}
    run_ids: list[str] = []
    async with cell.fresh_world() as world:
        async with Engine(world=world, workflows=[_flows.long_chain]) as engine:
            # Calibrate: how many events the run starts and ends with, and how many a step adds.
            bare = await _park(engine, f"w6-{key}-bare", 0)
            ten = await _park(engine, f"w6-{key}-ten", 10)
            per_step = (ten - bare) / 10
            for token, steps in ((f"w6-{key}-bare", 0), (f"w6-{key}-ten", 10)):
                await _finish(engine, outcome, token, steps)
                run_ids.append(token)
                _flows.STEP_TIMES.pop(token, None)

            for size in cell.sizes.w6_events:
                steps = max(2, round((size - bare) / per_step))
                intervals: list[float] = []
                for attempt in range(math.ceil(_LIVE_SAMPLES / (steps - 1))):
                    token = f"w6-{key}-{size}-{attempt}"
                    length = await _park(engine, token, steps)
                    times = _flows.STEP_TIMES.pop(token)
                    tail = times[-(_LIVE_SAMPLES + 1) :]
                    intervals += [b - a for a, b in itertools.pairwise(tail)]
                    if attempt == 0:
                        outcome.notes.append(f"the {size}-event run has {length} events")
                        rebuilds = []
                        for _ in range(_REBUILDS):
                            await _evict(engine, token)
                            replays = engine.driver.replays
                            with stopwatch() as sw:
                                await engine.driver.drive(token)
                            rebuilds.append(sw.elapsed)
                            outcome.check_equal(
                                f"one replay rebuilds the {size}-event run",
                                engine.driver.replays - replays,
                                1,
                            )
                        outcome.figures[f"rebuild_ms@{size}"] = statistics.median(rebuilds) * 1000
                    await _finish(engine, outcome, token, steps)
                    run_ids.append(token)
                live[size] = statistics.median(intervals) / per_step
                outcome.figures[f"live_us_per_event@{size}"] = live[size] * 1e6
        await audit_runs(outcome, world, run_ids, None)
    sizes = sorted(live)
    outcome.figures["live_cost_growth"] = live[sizes[-1]] / live[sizes[0]]
    return outcome
