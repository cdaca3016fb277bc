"""The PostgreSQL world checks a ``child_ended`` against the child's end (the rules of
``worldflow.worlds._children``) without a query of its own when this process saw the child
end, and with one read of the child when it did not (another process, or a restart, tells
the parent): two worlds on one schema stand for two processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.worlds import postgres_db
from worldflow.errors import EntityConflictError, InvalidEventError
from worldflow.worlds import (
    ChildCompleted,
    ChildEnded,
    RunCompleted,
)
from worldflow.worlds._postgres import PostgresWorld
from worldflow.worlds.testing._base import new_run, payload
from worldflow.worlds.testing._children import child_hook, ended_child

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(postgres_db.SKIP, reason=postgres_db.SKIP_REASON),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[PostgresWorld, PostgresWorld]]:
    async with postgres_db.fresh_schema() as url, postgres_db.two_worlds(url) as worlds:
        yield worlds


async def _queries(world: PostgresWorld) -> int:
    await asyncio.sleep(0)  # asyncpg counts a statement in a callback it schedules
    return world.queries


async def _parent_with_ended_child(world: PostgresWorld) -> tuple[str, str]:
    parent = await new_run(world, started=True)
    child_id = f"{parent.run_id}-kid"
    await child_hook(world, parent.run_id, child_id)
    await ended_child(
        world, parent.run_id, child_id, RunCompleted(run_id=child_id, output=payload(7))
    )
    return parent.run_id, child_id


def _told(parent_id: str, child_id: str, output: int) -> ChildEnded:
    return ChildEnded(
        run_id=parent_id,
        correlation_id="hc",
        child_run_id=child_id,
        outcome=ChildCompleted(output=payload(output)),
    )


async def test_the_process_that_saw_the_child_end_checks_it_without_a_query(
    pair: tuple[PostgresWorld, PostgresWorld],
) -> None:
    a, _ = pair
    parent_id, child_id = await _parent_with_ended_child(a)
    before = await _queries(a)
    await a.append(parent_id, [_told(parent_id, child_id, 7)])
    assert await _queries(a) - before == 1  # the append statement, nothing else
    assert a.append_stats.child_reads == 0


async def test_another_process_reads_the_child_once(
    pair: tuple[PostgresWorld, PostgresWorld],
) -> None:
    a, b = pair
    parent_id, child_id = await _parent_with_ended_child(a)
    with pytest.raises(InvalidEventError, match="did not end with"):
        await b.append(parent_id, [_told(parent_id, child_id, 8)])
    assert b.append_stats.child_reads == 1
    result = await b.append(parent_id, [_told(parent_id, child_id, 7)])
    assert [e.type for e in result.events] == ["child_ended"]
    assert b.append_stats.child_reads == 2
    # The process that saw the child end, its cache of the parent now behind, decides its
    # own report on a fresh read of the parent: the second report of the child, refused.
    with pytest.raises(EntityConflictError, match="first child_ended wins"):
        await a.append(parent_id, [_told(parent_id, child_id, 7)])
    assert a.append_stats.child_reads == 0  # the child's end it knew
    assert (await a.get_run(parent_id)).last_seq == result.run.last_seq
