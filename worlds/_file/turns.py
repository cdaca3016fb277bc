"""Writes to one run go one at a time, in arrival order: each is checked against the one
before it, which is durable (and in the views) by then.

A free turn is taken at once with no lock object and no future: the usual case (one write
to a run at a time) costs a dictionary entry. Only a write that finds the run's turn taken
queues a future, and the holder hands the turn to the first waiter still waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["RunTurns"]


class RunTurns:
    """The per-run turns of a world's writes (used on the event loop only)."""

    __slots__ = ("_turns",)

    def __init__(self) -> None:
        # run id -> tasks waiting for the run's turn; a run whose turn is held has an entry
        self._turns: dict[str, deque[asyncio.Future[None]] | None] = {}

    async def take(self, run_id: str) -> bool:
        """Wait for ``run_id``'s turn; release it with :meth:`release` (in a ``finally``).
        Returns whether it had to wait."""
        turns = self._turns
        if run_id not in turns:
            turns[run_id] = None  # taken, nobody waiting
            return False
        waiters = turns[run_id]
        if waiters is None:
            waiters = turns[run_id] = deque()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(run_id)  # it was handed to us as we were cancelled
            raise
        return True

    def release(self, run_id: str) -> None:
        """Hand the turn to the next waiter still waiting, or free it."""
        waiters = self._turns[run_id]
        while waiters:
            future = waiters.popleft()
            if not future.done():  # one cancelled while waiting is skipped
                future.set_result(None)
                return
        del self._turns[run_id]
