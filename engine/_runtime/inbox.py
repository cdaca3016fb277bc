"""Which events a cached instance is fed next: those our own appends returned (the slot's
inbox) when they continue the instance's ``last_seq`` without a gap, else the log after it.
"""

from __future__ import annotations

import operator

from worldflow._replay.instance import Progress
from worldflow._runtime.slot import Slot
from worldflow.worlds import AnyEvent, StepCreated, StepStarted, World

__all__ = ["from_inbox", "only_new_steps", "read_log", "steps_wait"]

_PAGE = 1000
_seq = operator.attrgetter("seq")


def from_inbox(slot: Slot) -> list[AnyEvent] | None:
    """The inbox's events that continue the instance (the inbox is emptied), or ``None`` if
    the log must be read (a gap: someone else appended; or ``slot.fetch``)."""
    instance = slot.instance
    assert instance is not None
    inbox = slot.inbox
    slot.inbox = []
    if slot.fetch:
        return None
    if not inbox:
        return inbox
    expected = instance.last_seq + 1
    if inbox[0].seq == expected:
        # The usual case: what one append stored, going on where the instance is.
        at = expected
        for event in inbox:
            if event.seq != at:
                break
            at += 1
        else:
            return inbox
    if len(inbox) > 1:
        inbox.sort(key=_seq)
    out: list[AnyEvent] = []
    for event in inbox:
        if event.seq < expected:
            continue  # already fed (or a duplicate)
        if event.seq != expected:
            return None  # a gap: someone else appended in between
        out.append(event)
        expected += 1
    return out


async def read_log(world: World, run_id: str, after: int) -> list[AnyEvent]:
    """The run's events after seq ``after``, every page of them."""
    events: list[AnyEvent] = []
    while True:
        page = await world.list_events(run_id, after_seq=after, limit=_PAGE)
        events.extend(page.items)
        if not page.has_more or not page.items:
            return events
        after = page.items[-1].seq


def only_new_steps(events: list[AnyEvent]) -> bool:
    """Whether ``events`` only create and start steps (nothing the body can see)."""
    for event in events:
        kind = type(event)
        if kind is not StepCreated and kind is not StepStarted:
            return False
    return True


def steps_wait(slot: Slot, stored: list[AnyEvent], progress: Progress) -> Progress:
    """``stored`` (only new steps, see :func:`only_new_steps`) waits in the inbox and goes in
    with the steps' results (one feed per step instead of two): the progress to go on with,
    whose launch list comes from the batch itself."""
    slot.inbox = stored
    slot.track(stored)
    # The caller's progress, updated in place (it is the caller's own: a feed's result):
    # its commands are the batch just stored.
    pending = progress.pending_steps
    for event in stored:
        if type(event) is StepCreated and event.correlation_id:
            pending.append(event.correlation_id)
    progress.commands = []
    progress.error = None
    return progress
