"""Re-record the versioning histories: ``python -m tests.histories.versioning.record``.

Never run by the tests. The ``*-v1-*`` histories are the point: they were recorded with the
workflow *before* the change (``pricing_v1``, ``fanout_v1``) and must keep replaying against
every later version that keeps ``patched()``. Re-record them only with the v1 code.

* ``pricing-v1-completed``: a v1 run, approved, shipped and delivered.
* ``pricing-v1-approving``: a v1 run waiting for its approval (in flight at the deploy, before
  the point the change is at).
* ``pricing-v1-delivering``: a v1 run that shipped and waits for the delivery (in flight, past
  that point).
* ``pricing-v2-completed``: a run of the patched code (it holds the ``patch_marked`` event).
* ``fanout-v1-completed`` / ``fanout-v2-completed``: the gather, before and after its patch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.histories.versioning import workflows as wf
from worldflow.testing import (
    fetch_history,
    memory_engine,
    resume_hook_when_waiting,
    wait_until_blocked,
    write_history,
)

HERE = Path(__file__).parent
TIMEOUT = 86400.0  # virtual seconds


async def _record(name: str, workflow: Any, *args: Any, hooks: int | None = None) -> Path:
    """Run ``workflow(*args)``; answer ``hooks`` of its two hooks (None: it has none)."""
    async with memory_engine([workflow]) as engine:
        run = await engine.start(workflow, *args, run_id=f"golden-{name}")
        tokens = [f"approve:{args[0]}", f"delivered:{args[0]}"]
        for token in tokens[: hooks or 0]:
            await resume_hook_when_waiting(run, token, {"ok": True})
        if hooks is not None and hooks < len(tokens):
            await wait_until_blocked(run, hook=tokens[hooks])
        else:
            await run.result(timeout=TIMEOUT)
        path = HERE / f"{name}.jsonl"
        write_history(await fetch_history(engine.world, run.run_id), path)
        return path


async def main() -> None:
    paths = [
        await _record("pricing-v1-completed", wf.pricing_v1, "kettle", hooks=2),
        await _record("pricing-v1-approving", wf.pricing_v1, "lamp", hooks=0),
        await _record("pricing-v1-delivering", wf.pricing_v1, "desk", hooks=1),
        await _record("pricing-v2-completed", wf.pricing_v2, "kettle", hooks=2),
        await _record("fanout-v1-completed", wf.fanout_v1, 2),
        await _record("fanout-v2-completed", wf.fanout_v2, 2),
    ]
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
