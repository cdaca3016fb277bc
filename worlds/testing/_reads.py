"""Conformance tests of the read path: lookups, listings, pagination, purge, notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from worldflow.errors import (
    HookNotFoundError,
    LeaseLostError,
    RunNotFoundError,
    RunNotTerminalError,
    StepNotFoundError,
    StreamNotFoundError,
    WorldflowError,
)
from worldflow.worlds._events import (
    EventRaised,
    HookDisposed,
    PatchMarked,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunStarted,
    RunSuspended,
    StepCreated,
)
from worldflow.worlds._ids import new_id
from worldflow.worlds._protocol import World
from worldflow.worlds._records import (
    NULL,
    ForkPoint,
    HookStatus,
    Page,
    QueueMessage,
    RunStatus,
    WaitStatus,
)
from worldflow.worlds.testing._base import SuiteBase, add_hook, add_wait, error_info, new_run

__all__ = ["ReadConformance"]

T = TypeVar("T")


async def collect(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[list[T]]:
    """Every page of a listing, following cursors; checks the page invariants on the way."""
    pages: list[list[T]] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        pages.append(page.items)
        if not page.has_more:
            assert page.cursor is None, "the last page must have no cursor"
            return pages
        assert page.cursor is not None, "has_more without a cursor"
        assert page.cursor != cursor, "a repeated cursor"
        assert page.items, "an empty page that claims more"
        cursor = page.cursor


class ReadConformance(SuiteBase):
    """Reads: not-found errors, listings and their cursors, filters, purge, notifications."""

    async def test_every_read_of_an_unknown_run_raises_run_not_found(self, world: World) -> None:
        reads: list[Callable[[], Awaitable[Any]]] = [
            lambda: world.get_run("nope"),
            lambda: world.list_events("nope"),
            lambda: world.get_step("nope", "s"),
            lambda: world.list_steps("nope"),
            lambda: world.list_hooks(run_id="nope"),
            lambda: world.list_waits(run_id="nope"),
            lambda: world.list_streams("nope"),
            lambda: world.write_stream("nope", "out", [b"x"]),
            lambda: world.close_stream("nope", "out"),
            lambda: world.wait_for_run("nope", after_seq=0, timeout=0),
            lambda: world.purge("nope"),
            lambda: anext(aiter(world.read_stream("nope", "out", follow=False))),
            lambda: anext(aiter(world.read_stream("nope", "out", follow=True))),
        ]
        for read in reads:
            with pytest.raises(RunNotFoundError):
                await read()

    async def test_unknown_step_hook_and_stream(self, world: World) -> None:
        run = await new_run(world, started=True)
        with pytest.raises(StepNotFoundError):
            await world.get_step(run.run_id, "nope")
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token("nope")
        with pytest.raises(StreamNotFoundError):
            await anext(aiter(world.read_stream(run.run_id, "nope", follow=False)))
        await world.append(run.run_id, [RunCompleted(run_id=run.run_id, output=NULL)])
        with pytest.raises(StreamNotFoundError):  # a finished run will never get one
            await anext(aiter(world.read_stream(run.run_id, "nope", follow=True)))

    # -- pagination ----------------------------------------------------------------------

    async def test_list_events_pages(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        await world.append(r, [EventRaised(run_id=r, name=str(n)) for n in range(23)])
        everything = (await world.list_events(r)).items
        assert [e.seq for e in everything] == list(range(1, 26))
        pages = await collect(lambda c: world.list_events(r, after_seq=int(c or 0), limit=10))
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [e for p in pages for e in p] == everything
        first = await world.list_events(r, limit=10)
        assert first.cursor == "10"
        tail = await world.list_events(r, after_seq=20)
        assert [e.seq for e in tail.items] == [21, 22, 23, 24, 25]
        assert not tail.has_more
        assert (await world.list_events(r, after_seq=25)).items == []
        exact = await world.list_events(r, after_seq=15, limit=10)
        assert (len(exact.items), exact.has_more, exact.cursor) == (10, False, None)

    async def test_list_steps_pages(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        ids = [f"s{n:02}" for n in range(17)]
        await world.append(
            r,
            [StepCreated(run_id=r, correlation_id=s, step_name="x", input=NULL) for s in ids],
        )
        pages = await collect(lambda c: world.list_steps(r, limit=5, cursor=c))
        assert [len(p) for p in pages] == [5, 5, 5, 2]
        assert [s.step_id for p in pages for s in p] == ids

    async def test_list_hooks_and_waits_pages(self, world: World) -> None:
        a = await new_run(world, started=True)
        b = await new_run(world, started=True)
        hooks: list[str] = []
        waits: list[str] = []
        for _ in range(6):
            for run in (a, b):
                hook_id = new_id("hook")
                await add_hook(world, run.run_id, new_id("hook"), hook_id)
                hooks.append(hook_id)
                waits.append(await add_wait(world, run.run_id))
        await world.append(a.run_id, [HookDisposed(run_id=a.run_id, correlation_id=hooks[0])])
        world_hooks = await collect(lambda c: world.list_hooks(limit=5, cursor=c))
        assert [h.hook_id for p in world_hooks for h in p] == hooks
        world_waits = await collect(lambda c: world.list_waits(limit=5, cursor=c))
        assert [w.wait_id for p in world_waits for w in p] == waits
        a_hooks = await collect(lambda c: world.list_hooks(run_id=a.run_id, limit=4, cursor=c))
        assert [h.hook_id for p in a_hooks for h in p] == hooks[0::2]
        b_waits = await collect(lambda c: world.list_waits(run_id=b.run_id, limit=4, cursor=c))
        assert [w.wait_id for p in b_waits for w in p] == waits[1::2]
        active = await collect(
            lambda c: world.list_hooks(status=HookStatus.ACTIVE, limit=3, cursor=c)
        )
        assert [h.hook_id for p in active for h in p] == hooks[1:]
        disposed = await world.list_hooks(run_id=a.run_id, status=HookStatus.DISPOSED)
        assert [h.hook_id for h in disposed.items] == hooks[:1]
        await world.append(b.run_id, [RunCompleted(run_id=b.run_id, output=NULL)])
        waiting = await collect(
            lambda c: world.list_waits(status=WaitStatus.WAITING, limit=4, cursor=c)
        )
        assert [w.wait_id for p in waiting for w in p] == waits[0::2]

    @pytest.mark.parametrize("order", ["asc", "desc"])
    async def test_list_runs_pages_while_runs_are_created(self, world: World, order: Any) -> None:
        existing = [(await new_run(world)).run_id for _ in range(12)]
        added: list[str] = []

        async def fetch(cursor: str | None) -> Page[Any]:
            page = await world.list_runs(order=order, limit=5, cursor=cursor)
            added.append((await new_run(world)).run_id)  # a new run between every two pages
            return page

        pages = await collect(fetch)
        seen = [run.run_id for page in pages for run in page]
        assert len(seen) == len(set(seen)), "a run was repeated"
        if order == "desc":  # newest first: the runs created meanwhile are newer, not listed
            assert seen == existing[::-1]
        else:  # oldest first: the new runs join the end
            assert seen[: len(existing)] == existing
            assert set(seen[len(existing) :]) <= set(added)
            assert seen[len(existing) :] == added[: len(seen) - len(existing)]

    async def test_list_runs_filters(self, world: World) -> None:
        a = await new_run(world, workflow_name="a", resource_id="u1", metadata={"k": "1"})
        b = await new_run(world, workflow_name="b", resource_id="u1", metadata={"k": "1", "j": "x"})
        c = await new_run(world, workflow_name="a", resource_id="u2", metadata={"k": "2"})
        d = await new_run(world, workflow_name="a", started=True)
        await world.append(b.run_id, [RunStarted(run_id=b.run_id)])
        await world.append(b.run_id, [RunFailed(run_id=b.run_id, error=error_info())])
        await world.append(c.run_id, [RunSuspended(run_id=c.run_id)])
        runs = [await world.get_run(x.run_id) for x in (a, b, c, d)]

        async def ids(**filters: Any) -> list[str]:
            page = await world.list_runs(order="asc", **filters)
            return [r.run_id for r in page.items]

        def where(pred: Callable[[Any], bool]) -> list[str]:
            return [r.run_id for r in runs if pred(r)]

        assert await ids() == where(lambda r: True)
        desc = await world.list_runs()
        assert [r.run_id for r in desc.items] == where(lambda r: True)[::-1]
        assert await ids(workflow_name="a") == where(lambda r: r.workflow_name == "a")
        assert await ids(workflow_name="zzz") == []
        assert await ids(status=RunStatus.FAILED) == [b.run_id]
        assert await ids(status={RunStatus.PENDING, RunStatus.SUSPENDED}) == [a.run_id, c.run_id]
        assert await ids(status=[RunStatus.RUNNING]) == [d.run_id]
        assert await ids(resource_id="u1") == [a.run_id, b.run_id]
        assert await ids(metadata={"k": "1"}) == [a.run_id, b.run_id]
        assert await ids(metadata={"k": "1", "j": "x"}) == [b.run_id]
        assert await ids(metadata={"k": "1", "j": "y"}) == []
        assert await ids(metadata={}) == where(lambda r: True)
        pivot = runs[2].created_at
        assert await ids(created_after=pivot) == where(lambda r: r.created_at >= pivot)
        assert c.run_id in await ids(created_after=pivot)
        assert await ids(created_before=pivot) == where(lambda r: r.created_at < pivot)
        assert c.run_id not in await ids(created_before=pivot)
        start, end = runs[1].created_at, runs[3].created_at
        assert await ids(created_after=start, created_before=end) == where(
            lambda r: start <= r.created_at < end
        )
        assert await ids(workflow_name="a", resource_id="u2", metadata={"k": "2"}) == [c.run_id]
        filtered = await collect(
            lambda cur: world.list_runs(workflow_name="a", order="asc", limit=1, cursor=cur)
        )
        assert [r.run_id for p in filtered for r in p] == where(lambda r: r.workflow_name == "a")

    async def test_patch_markers_are_kept_in_the_run_view(self, world: World) -> None:
        run = await new_run(world, started=True)
        assert run.patches == []
        for name in ("discount", "fast-path", "discount"):
            await world.append(run.run_id, [PatchMarked(run_id=run.run_id, name=name)])
        view = await world.get_run(run.run_id)
        assert view.patches == ["discount", "fast-path"]  # each name once, in log order
        types = [e.type for e in (await world.list_events(run.run_id)).items]
        assert types.count("patch_marked") == 3

    async def test_fork_lineage_is_a_field_listed_both_ways(self, world: World) -> None:
        source = await new_run(world, metadata={"k": "1"})
        other = await new_run(world)
        forks = []
        for n in range(3):
            fid = new_id("wrun")
            point = None
            if n == 1:
                point = ForkPoint(
                    step_id="step_x", step_name="s", step_number=2, ids_at=source.created_at
                )
            created = RunCreated(
                run_id=fid,
                workflow_name="wf",
                input=NULL,
                forked_from=source.run_id,
                fork=point,
            )
            await world.append(fid, [created])
            forks.append(fid)
        fork = await world.get_run(forks[1])
        assert (fork.forked_from, fork.forked_from_step) == (source.run_id, "step_x")
        assert (await world.get_run(forks[0])).forked_from_step is None
        assert fork.metadata == {}  # lineage is not user metadata
        listed = await world.list_runs(forked_from=source.run_id, order="asc")
        assert [r.run_id for r in listed.items] == forks
        assert (await world.list_runs(forked_from=other.run_id)).items == []
        paged = await collect(
            lambda cur: world.list_runs(forked_from=source.run_id, limit=2, cursor=cur)
        )
        assert [r.run_id for p in paged for r in p] == forks[::-1]
        events = (await world.list_events(forks[1])).items
        assert isinstance(events[0], RunCreated)
        assert events[0].fork is not None
        assert events[0].fork.step_number == 2

    # -- purge ---------------------------------------------------------------------------

    async def test_purge_refuses_a_run_that_is_not_terminal(self, world: World) -> None:
        pending = await new_run(world)
        running = await new_run(world, started=True)
        for run in (pending, running):
            with pytest.raises(RunNotTerminalError):
                await world.purge(run.run_id)
            assert (await world.get_run(run.run_id)).run_id == run.run_id

    async def test_purge_removes_everything_of_a_terminal_run(self, world: World) -> None:
        keep = await new_run(world, started=True)
        gone = await new_run(world, started=True)
        token = new_id("hook")
        for run in (keep, gone):
            r = run.run_id
            await world.append(
                r, [StepCreated(run_id=r, correlation_id="s", step_name="s", input=NULL)]
            )
            await add_hook(world, r, new_id("hook") if run is keep else token)
            await add_wait(world, r)
            await world.write_stream(r, "out", [b"a", b"b"])
            await world.enqueue("runs", QueueMessage(kind="run", run_id=r))
            await world.enqueue("steps", QueueMessage(kind="step", run_id=r, step_id="s"))
        [leased] = await world.lease("steps", lease_for=30)
        await world.append(gone.run_id, [RunCancelled(run_id=gone.run_id)])
        await world.purge(gone.run_id)
        g = gone.run_id
        for read in (
            lambda: world.get_run(g),
            lambda: world.list_events(g),
            lambda: world.list_steps(g),
            lambda: world.list_hooks(run_id=g),
            lambda: world.list_waits(run_id=g),
            lambda: world.list_streams(g),
        ):
            with pytest.raises(RunNotFoundError):
                await read()
        assert all(h.run_id == keep.run_id for h in (await world.list_hooks()).items)
        assert all(w.run_id == keep.run_id for w in (await world.list_waits()).items)
        assert [r.run_id for r in (await world.list_runs()).items] == [keep.run_id]
        with pytest.raises(HookNotFoundError):
            await world.get_hook_by_token(token)
        runs_left = await world.lease("runs", lease_for=30, max_messages=10)
        steps_left = await world.lease("steps", lease_for=30, max_messages=10)
        assert [x.message.run_id for x in runs_left + steps_left + [leased]].count(g) <= 1
        assert all(x.message.run_id == keep.run_id for x in runs_left + steps_left)
        if leased.message.run_id == g:  # its message is gone: the lease cannot be acked
            with pytest.raises(LeaseLostError):
                await world.ack(leased)
        # The kept run is whole, and the purged id can be used again.
        assert len((await world.list_events(keep.run_id)).items) == 5
        assert (await world.list_streams(keep.run_id))[0].length == 2
        again = await new_run(world, g)
        assert again.last_seq == 1

    # -- notifications -------------------------------------------------------------------

    async def test_wait_for_run_wakes_on_append(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        assert await world.wait_for_run(r, after_seq=0) == 2  # already past: returns at once
        waiter = asyncio.ensure_future(world.wait_for_run(r, after_seq=2))
        await asyncio.sleep(0)  # let it block (correctness does not depend on this)
        assert not waiter.done()
        await world.append(r, [EventRaised(run_id=r, name="x")])
        async with asyncio.timeout(5):
            assert await waiter == 3

    async def test_wait_for_run_times_out_with_the_current_seq(self, world: World) -> None:
        run = await new_run(world, started=True)
        other = await new_run(world)
        waiter = asyncio.ensure_future(world.wait_for_run(run.run_id, after_seq=2, timeout=0.05))
        await world.append(other.run_id, [RunStarted(run_id=other.run_id)])  # another run
        async with asyncio.timeout(5):
            assert await waiter == 2
        assert await world.wait_for_run(run.run_id, after_seq=2, timeout=0) == 2

    async def test_wait_for_run_terminal_wakes_at_the_end_only(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        waiter = asyncio.ensure_future(world.wait_for_run(r, after_seq=2, terminal=True))
        await world.append(r, [EventRaised(run_id=r, name="x")])
        # The log grew but the run goes on: the waiter must still wait. (A wrong world that
        # woke it could be slow to; a right one never ends it here.)
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await world.append(r, [RunCompleted(run_id=r, output=NULL)])
        async with asyncio.timeout(5):
            assert await waiter == 4
        # Already terminal and past after_seq: at once; at its end already, nothing more comes.
        assert await world.wait_for_run(r, after_seq=2, terminal=True) == 4
        assert await world.wait_for_run(r, after_seq=4, terminal=True, timeout=0.05) == 4

    async def test_wait_for_run_terminal_times_out_with_the_current_seq(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        await world.append(r, [EventRaised(run_id=r, name="x")])
        # Past after_seq but not terminal: the timeout ends it with where the log is.
        assert await world.wait_for_run(r, after_seq=2, terminal=True, timeout=0.05) == 3
        assert await world.wait_for_run(r, after_seq=0, terminal=True, timeout=0) == 3
        with pytest.raises(RunNotFoundError):
            await world.wait_for_run("nope", after_seq=0, terminal=True, timeout=0)
        failed = await new_run(world, started=True)
        waiter = asyncio.ensure_future(
            world.wait_for_run(failed.run_id, after_seq=2, terminal=True, timeout=10)
        )
        await world.append(failed.run_id, [RunFailed(run_id=failed.run_id, error=error_info())])
        async with asyncio.timeout(5):
            assert await waiter == 3

    async def test_wait_for_world_wakes_on_any_run(self, world: World) -> None:
        now = await world.wait_for_world(after=0, timeout=0)
        run = await new_run(world)
        after_create = await world.wait_for_world(after=now, timeout=0)
        assert after_create > now
        waiter = asyncio.ensure_future(world.wait_for_world(after=after_create))
        await asyncio.sleep(0)
        assert not waiter.done()
        await world.append(run.run_id, [RunStarted(run_id=run.run_id)])
        async with asyncio.timeout(5):
            assert await waiter > after_create
        latest = await world.wait_for_world(after=0, timeout=0)
        assert await world.wait_for_world(after=latest, timeout=0.05) == latest

    async def test_many_waiters_wake_together(self, world: World) -> None:
        run = await new_run(world, started=True)
        r = run.run_id
        waiters = [
            asyncio.ensure_future(world.wait_for_run(r, after_seq=2, timeout=10)) for _ in range(20)
        ]
        await asyncio.sleep(0)
        await world.append(r, [EventRaised(run_id=r, name="x")])
        async with asyncio.timeout(5):
            assert await asyncio.gather(*waiters) == [3] * 20

    # -- lifecycle -----------------------------------------------------------------------

    async def test_aclose_is_idempotent_and_use_after_close_is_an_error(self, world: World) -> None:
        run = await new_run(world)
        await world.aclose()
        await world.aclose()
        with pytest.raises(WorldflowError):
            await world.get_run(run.run_id)
        with pytest.raises(WorldflowError):
            await new_run(world)
