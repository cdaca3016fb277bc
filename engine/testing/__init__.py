"""``worldflow.testing``: test your workflows fast, and check new code against old runs.

* :class:`VirtualClock`: days of ``sleep`` in milliseconds; time jumps to the next timer
  whenever everything is blocked (or moves only when you say, with ``auto_advance=False``).
* :func:`memory_engine`: an entered ``Engine`` on a fresh memory world with that clock.
* :func:`wait_until_blocked`, :func:`resume_hook_when_waiting`,
  :func:`raise_event_when_waiting`, :func:`skip_sleep`: wait until a run waits on a hook, an
  event, a sleep or a step (read from its log, woken by the world's notifications), then move
  it on.
* :func:`override_step`: run a fake instead of a step for the length of a ``with`` block.
* :func:`replay`, :func:`export_history`, :func:`fetch_history`, :func:`load_history`:
  replay a recorded run (from a world, or a JSONL file) against the current code; a change
  that would break runs in flight raises :class:`ReplayDivergenceError` showing the first
  divergence side by side. Run it in CI before deploying.
* A pytest plugin (``worldflow.testing.pytest_plugin``, loaded automatically when worldflow
  is installed) with the fixtures ``worldflow_clock``, ``worldflow_world`` and
  ``worldflow_engine``.

Importing this module does not import pytest.
"""

from worldflow.testing._clock import DEFAULT_START, VirtualClock
from worldflow.testing._engine import memory_engine
from worldflow.testing._history import (
    Divergence,
    ReplayDivergenceError,
    ReplayResult,
    export_history,
    fetch_history,
    load_history,
    replay,
    write_history,
)
from worldflow.testing._steps import override_step
from worldflow.testing._waiting import (
    Blocked,
    raise_event_when_waiting,
    resume_hook_when_waiting,
    skip_sleep,
    wait_until_blocked,
)

__all__ = [
    "DEFAULT_START",
    "Blocked",
    "Divergence",
    "ReplayDivergenceError",
    "ReplayResult",
    "VirtualClock",
    "export_history",
    "fetch_history",
    "load_history",
    "memory_engine",
    "override_step",
    "raise_event_when_waiting",
    "replay",
    "resume_hook_when_waiting",
    "skip_sleep",
    "wait_until_blocked",
    "write_history",
]
