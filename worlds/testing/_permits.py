"""Conformance tests of the ``FlowControl`` role: permits for concurrency and rate limits.

Engines are played with registrations on one world object (a PostgreSQL world sees the same
calls from several processes). Expiry (of an engine, of a rate period) is waited out with a
short real sleep: the world's clock decides, and only a world's own clock is portable.
"""

from __future__ import annotations

import asyncio

import pytest

from worldflow.errors import InvalidEventError, RunNotFoundError, RunTerminalError
from worldflow.worlds._events import RunCancelled, RunCompleted
from worldflow.worlds._protocol import World
from worldflow.worlds.testing._base import SuiteBase, new_run, payload

__all__ = ["FlowControlConformance"]

_SHORT_TTL = 0.4  # an engine meant to die after the few calls a test makes for it
_LONG_TTL = 600.0
_EXPIRED = 0.6  # a real sleep past _SHORT_TTL
_PERIOD = 0.5  # a rate period waited out in a test
_PAST_PERIOD = 0.7


async def _engine(world: World, ttl: float = _LONG_TTL) -> str:
    return (await world.register_engine(workflows=["wf"], ttl=ttl)).engine_id


class FlowControlConformance(SuiteBase):
    """Permits: limits, leases tied to engines and runs, the line, rate periods."""

    async def test_concurrency_limit_is_shared_by_engines(self, world: World) -> None:
        one, two = await _engine(world), await _engine(world)
        a, b, c = [await new_run(world) for _ in range(3)]
        first = await world.acquire_permit("k", a.run_id, run_id=a.run_id, engine_id=one, limit=2)
        second = await world.acquire_permit("k", b.run_id, run_id=b.run_id, engine_id=two, limit=2)
        third = await world.acquire_permit("k", c.run_id, run_id=c.run_id, engine_id=two, limit=2)
        assert (first.granted, second.granted, third.granted) == (True, True, False)
        assert third.held == 2
        assert third.ahead == 0
        # Other keys are independent.
        other = await world.acquire_permit("k2", c.run_id, run_id=c.run_id, engine_id=two, limit=1)
        assert other.granted
        assert await world.release_permit("k", a.run_id)
        assert not await world.release_permit("k", a.run_id)  # idempotent
        again = await world.acquire_permit("k", c.run_id, run_id=c.run_id, engine_id=two, limit=2)
        assert again.granted
        assert again.held == 2

    async def test_asking_again_is_idempotent_and_moves_the_permit(self, world: World) -> None:
        one, two = await _engine(world), await _engine(world, ttl=_SHORT_TTL)
        run = await new_run(world)
        assert (
            await world.acquire_permit("k", "h", run_id=run.run_id, engine_id=two, limit=1)
        ).granted
        # A takeover: the same holder from another engine keeps the one permit.
        grant = await world.acquire_permit("k", "h", run_id=run.run_id, engine_id=one, limit=1)
        assert grant.granted
        assert grant.held == 1
        await asyncio.sleep(_EXPIRED)  # the first engine dies: the permit is the second's now
        [permit] = await world.list_permits("k")
        assert permit.granted
        assert permit.engine_id == one
        assert permit.holder == "h"

    async def test_a_dead_engines_permits_lapse(self, world: World) -> None:
        dying, live = await _engine(world, ttl=_SHORT_TTL), await _engine(world)
        a, b = await new_run(world), await new_run(world)
        assert (
            await world.acquire_permit("k", "a", run_id=a.run_id, engine_id=dying, limit=1)
        ).granted
        refused = await world.acquire_permit("k", "b", run_id=b.run_id, engine_id=live, limit=1)
        assert not refused.granted
        await asyncio.sleep(_EXPIRED)
        granted = await world.acquire_permit("k", "b", run_id=b.run_id, engine_id=live, limit=1)
        assert granted.granted
        assert [p.holder for p in await world.list_permits("k")] == ["b"]

    async def test_a_deregistered_engines_permits_lapse(self, world: World) -> None:
        leaving, live = await _engine(world), await _engine(world)
        a, b = await new_run(world), await new_run(world)
        await world.acquire_permit("k", "a", run_id=a.run_id, engine_id=leaving, limit=1)
        await world.deregister_engine(leaving)
        grant = await world.acquire_permit("k", "b", run_id=b.run_id, engine_id=live, limit=1)
        assert grant.granted

    async def test_a_finished_runs_permits_lapse(self, world: World) -> None:
        engine = await _engine(world)
        a, b, c = [await new_run(world, started=True) for _ in range(3)]
        await world.acquire_permit("k", "a", run_id=a.run_id, engine_id=engine, limit=2)
        await world.acquire_permit("k", "b", run_id=b.run_id, engine_id=engine, limit=2)
        assert not (
            await world.acquire_permit("k", "c", run_id=c.run_id, engine_id=engine, limit=2)
        ).granted
        await world.append(a.run_id, [RunCompleted(run_id=a.run_id, output=payload(1))])
        assert (
            await world.acquire_permit("k", "c", run_id=c.run_id, engine_id=engine, limit=2)
        ).granted
        await world.append(b.run_id, [RunCancelled(run_id=b.run_id)])
        assert [p.holder for p in await world.list_permits("k")] == ["c"]

    async def test_a_terminal_or_unknown_run_is_refused(self, world: World) -> None:
        engine = await _engine(world)
        run = await new_run(world)
        await world.append(run.run_id, [RunCancelled(run_id=run.run_id)])
        with pytest.raises(RunTerminalError):
            await world.acquire_permit("k", "h", run_id=run.run_id, engine_id=engine, limit=1)
        with pytest.raises(RunNotFoundError):
            await world.acquire_permit("k", "h", run_id="wrun_nope", engine_id=engine, limit=1)

    async def test_the_line_goes_by_priority_then_first_asked(self, world: World) -> None:
        engine = await _engine(world)
        runs = [await new_run(world) for _ in range(4)]
        holder, low, early, high = (r.run_id for r in runs)

        async def ask(name: str, priority: int = 0) -> bool:
            grant = await world.acquire_permit(
                "k", name, run_id=name, engine_id=engine, limit=1, priority=priority
            )
            return grant.granted

        assert await ask(holder)
        assert not await ask(low, -5)
        assert not await ask(early)
        assert not await ask(high, 10)
        line = await world.list_permits("k")
        assert [p.holder for p in line] == [holder, high, early, low]
        assert [p.granted for p in line] == [True, False, False, False]
        await world.release_permit("k", holder)
        # Only the head of the line gets the freed permit, whoever asks first.
        assert not await ask(low, -5)
        assert not await ask(early)
        assert await ask(high, 10)
        await world.release_permit("k", high)
        assert await ask(early)
        # Leaving the line lets the next one through.
        await world.release_permit("k", early)
        assert await ask(low, -5)

    async def test_a_waiter_whose_run_ended_leaves_the_line(self, world: World) -> None:
        engine = await _engine(world)
        a, b, c = [await new_run(world, started=True) for _ in range(3)]
        await world.acquire_permit("k", "a", run_id=a.run_id, engine_id=engine, limit=1)
        await world.acquire_permit("k", "b", run_id=b.run_id, engine_id=engine, limit=1)
        await world.acquire_permit("k", "c", run_id=c.run_id, engine_id=engine, limit=1)
        await world.append(b.run_id, [RunCancelled(run_id=b.run_id)])
        await world.release_permit("k", "a")
        assert (
            await world.acquire_permit("k", "c", run_id=c.run_id, engine_id=engine, limit=1)
        ).granted

    async def test_rate_limit_counts_grants_per_period(self, world: World) -> None:
        engine = await _engine(world)
        runs = [await new_run(world) for _ in range(3)]
        grants = [
            await world.acquire_permit(
                "rate", r.run_id, run_id=r.run_id, engine_id=engine, limit=2, period=_PERIOD
            )
            for r in runs
        ]
        assert [g.granted for g in grants] == [True, True, False]
        refused = grants[2]
        assert refused.retry_after is not None
        assert 0 <= refused.retry_after <= _PERIOD
        # Releasing a rate grant frees nothing: it counts for its whole period.
        await world.release_permit("rate", runs[0].run_id)
        again = await world.acquire_permit(
            "rate", runs[2].run_id, run_id=runs[2].run_id, engine_id=engine, limit=2, period=_PERIOD
        )
        assert not again.granted
        await asyncio.sleep(_PAST_PERIOD)
        later = await world.acquire_permit(
            "rate", runs[2].run_id, run_id=runs[2].run_id, engine_id=engine, limit=2, period=_PERIOD
        )
        assert later.granted
        assert later.held == 1
        [permit] = await world.list_permits("rate")
        assert permit.expires_at is not None
        assert permit.expires_at > permit.since

    async def test_bad_arguments_are_refused_naming_them(self, world: World) -> None:
        engine = await _engine(world)
        run = await new_run(world)
        cases: list[tuple[str, dict[str, object]]] = [
            ("key", {"key": ""}),
            ("key", {"key": "x" * 513}),
            ("holder", {"holder": 7}),
            ("limit", {"limit": 0}),
            ("limit", {"limit": True}),
            ("period", {"period": 0}),
            ("period", {"period": "1s"}),
            ("priority", {"priority": 2**31}),
        ]
        for field, override in cases:
            args: dict[str, object] = {
                "key": "k",
                "holder": "h",
                "run_id": run.run_id,
                "engine_id": engine,
                "limit": 1,
                **override,
            }
            with pytest.raises(InvalidEventError, match=f"`{field}`"):
                await world.acquire_permit(**args)  # type: ignore[arg-type]
        with pytest.raises(InvalidEventError, match="`key`"):
            await world.release_permit("", "h")
        with pytest.raises(InvalidEventError, match="`key`"):
            await world.list_permits("")
        assert await world.list_permits("k") == []
