"""The driver's slots and its cache of live instances.

A run has a :class:`Slot` while anything of it is in memory here (an instance, a step, a timer,
a drive); the slot goes when it is idle. Instances are kept in least-recently-driven order and
evicted beyond ``max_cached_runs`` (see :meth:`RunCache.trim`); an evicted run is rebuilt from
its log on its next drive.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta

from worldflow._runtime.slot import Slot
from worldflow._runtime.step_job import release
from worldflow.worlds._clock import Clock

__all__ = ["RunCache", "unreserve"]

_SOON = timedelta(seconds=30)  # a run with a timer due this soon is kept in the cache
_OVERFLOW = 10  # ... up to this many times max_cached_runs
_TRIM_LOOK = 16  # cache entries one trim looks at


def unreserve(slot: Slot) -> None:
    """Give back the step limits held for steps of the run that did not launch."""
    reserved = slot.reserved
    if reserved:
        slot.reserved = {}
        for limits in reserved.values():
            release(limits)


class RunCache:
    """The slots of the runs this engine works on, and the LRU cache of their instances.

    Args:
        clock: Time, to tell which cached runs have a timer due soon.
        max_cached_runs: Live instances kept (least recently driven evicted first).
    """

    def __init__(self, *, clock: Clock, max_cached_runs: int) -> None:
        self.clock = clock
        self.max_cached_runs = max_cached_runs
        self.slots: dict[str, Slot] = {}
        """Every run with something in memory here, by id."""
        self.lru: OrderedDict[str, Slot] = OrderedDict()
        """The runs with a live instance, least recently driven first."""

    def slot(self, run_id: str) -> Slot:
        """The slot of ``run_id``, made if needed."""
        slot = self.slots.get(run_id)
        if slot is None:
            slot = self.slots[run_id] = Slot(run_id)
        return slot

    def drop_instance(self, slot: Slot) -> None:
        """Forget the run's instance and what was learned from its log."""
        unreserve(slot)
        instance = slot.instance
        if instance is not None:
            slot.instance = None
            self.lru.pop(slot.run_id, None)
            instance.close()
        slot.reset()
        slot.inbox.clear()

    def trim(self) -> None:
        """Evict the least recently driven instances beyond ``max_cached_runs``.

        A run that will have work soon (a timer due within :data:`_SOON`, a step running
        here) is kept past the limit, up to :data:`_OVERFLOW` times it: evicting it would
        only rebuild it from its log a moment later. With more runs asleep than the cache
        holds, plain LRU evicted exactly the runs whose timers fire next, and every wake was
        a rebuild. A kept run moves to the recent end, so each trim looks at a few entries
        (O(1) per insertion) even when every cached run is kept.
        """
        cache = self.lru
        limit = self.max_cached_runs
        if len(cache) <= limit:
            return
        hard = limit * _OVERFLOW
        soon = self.clock.now() + _SOON
        looked = 0
        while len(cache) > limit and looked < _TRIM_LOOK:
            looked += 1
            run_id, slot = next(iter(cache.items()))
            busy = slot.driving or (
                len(cache) <= hard
                and (slot.jobs or (slot.timer_at is not None and slot.timer_at <= soon))
            )
            if busy:
                cache.move_to_end(run_id)
                continue
            self.drop_instance(slot)
            self.release(slot)

    def release(self, slot: Slot) -> None:
        """Drop the slot if nothing keeps it (see :meth:`Slot.idle`)."""
        if slot.idle() and self.slots.get(slot.run_id) is slot:
            del self.slots[slot.run_id]

    def evict(self, run_id: str | None = None) -> int:
        """Drop cached instances (all, or one run's) so the next drive replays from the log.

        Returns how many were dropped. Runs being driven right now are kept.
        """
        if run_id is None:
            victims = list(self.lru.values())
        else:
            one = self.lru.get(run_id)
            victims = [] if one is None else [one]
        dropped = 0
        for slot in victims:
            if not slot.driving:
                self.drop_instance(slot)
                dropped += 1
                self.release(slot)
        return dropped

    def close(self) -> None:
        """Drop every instance and slot (engine shutdown)."""
        for slot in list(self.lru.values()):
            self.drop_instance(slot)
        self.slots.clear()
