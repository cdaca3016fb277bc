"""The slot's inbox: the events this process's own appends returned, fed to the cached
instance without a read when they continue its log (``worldflow._runtime.inbox``).

Appends of one run can return out of order (two step tasks ending at once): the inbox is
sorted by seq before it is judged. Unsorted, it looks like a gap (someone else appended)
and the engine reads the log again: correct, but a read per such drive. (Planted in the
#18 mutation run as P17: no test noticed, since only the cost changes.)
"""

from __future__ import annotations

from tests.engine.history import History
from worldflow import step, workflow
from worldflow._runtime.inbox import from_inbox
from worldflow._runtime.slot import Slot


@step(name="inbox.work")
async def work(n: int) -> int:
    return n


@workflow(name="inbox.flow")
async def flow() -> int:
    return await work(1) + await work(2)


def _slot_behind(h: History, behind: int) -> Slot:
    """A slot whose instance has seen all but the last ``behind`` events of the log."""
    slot = Slot(h.run_id)
    instance = h.new_instance()
    instance.feed(h.events[:-behind])
    slot.instance = instance
    return slot


def test_our_appends_returned_out_of_order_are_fed_without_a_read() -> None:
    h = History(flow, check=False)
    h.run_steps()
    assert len(h.events) >= 4
    slot = _slot_behind(h, 3)
    slot.inbox = [h.events[-1], h.events[-3], h.events[-2]]
    assert from_inbox(slot) == h.events[-3:]
    assert slot.inbox == []


def test_a_gap_in_the_inbox_means_a_read() -> None:
    h = History(flow, check=False)
    h.run_steps()
    slot = _slot_behind(h, 3)
    slot.inbox = [h.events[-1], h.events[-2]]  # the first of the three came from elsewhere
    assert from_inbox(slot) is None
