"""The ``worldflow`` command: look at the runs in a world from a shell.

    worldflow runs [--status running] [--workflow NAME] [--resource ID] [--limit N]
    worldflow show RUN_ID          # status, input, output or error, and the timeline
    worldflow events RUN_ID        # the raw event log, one JSON object per line
    worldflow export RUN_ID FILE   # the log as a history file (for worldflow.testing.replay)

The world is ``--world URL``, else ``$WORLDFLOW_WORLD``, else ``file://./.worldflow``. A file
world is opened read-only, so the CLI can look while an engine is running on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from worldflow import _serde
from worldflow._errors import WorldflowError
from worldflow._timeline import build_timeline, format_timeline
from worldflow.worlds._events import AnyEvent, encode_event
from worldflow.worlds._open import DEFAULT_WORLD_URL, open_world
from worldflow.worlds._protocol import World
from worldflow.worlds._records import RunStatus

__all__ = ["main"]


def _world_url(given: str | None) -> str:
    url = given or os.environ.get("WORLDFLOW_WORLD") or DEFAULT_WORLD_URL
    if url.startswith("file:") and "read_only=" not in url:
        url += ("&" if "?" in url else "?") + "read_only=1"
    return url


async def _all_events(world: World, run_id: str) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    after = 0
    while True:
        page = await world.list_events(run_id, after_seq=after, limit=1000)
        events.extend(page.items)
        if not page.has_more or not page.items:
            return events
        after = page.items[-1].seq


async def _runs(world: World, args: argparse.Namespace) -> None:
    status = RunStatus(args.status) if args.status else None
    page = await world.list_runs(
        workflow_name=args.workflow, status=status, resource_id=args.resource, limit=args.limit
    )
    if not page.items:
        print("no runs")
        return
    print(f"{'run id':<32}  {'status':<9}  {'created (UTC)':<19}  workflow")
    for run in page.items:
        created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{run.run_id:<32}  {run.status:<9}  {created:<19}  {run.workflow_name}")
    if page.has_more:
        print(f"... more runs; raise --limit (now {args.limit})")


async def _show(world: World, args: argparse.Namespace) -> None:
    run = await world.get_run(args.run_id)
    print(f"run       {run.run_id}")
    print(f"workflow  {run.workflow_name}")
    print(f"status    {run.status}")
    if run.resource_id:
        print(f"resource  {run.resource_id}")
    if run.metadata:
        print(f"metadata  {run.metadata}")
    print(f"input     {_serde.decode(run.input)!r}")
    if run.status is RunStatus.COMPLETED:
        print(f"output    {_serde.decode(run.output)!r}")
    if run.error is not None:
        print(f"error     {run.error.name}: {run.error.message}")
    print("timeline")
    print(format_timeline(build_timeline(await _all_events(world, args.run_id))))


async def _events(world: World, args: argparse.Namespace) -> None:
    out = sys.stdout.buffer
    for event in await _all_events(world, args.run_id):
        out.write(encode_event(event) + b"\n")
    out.flush()


async def _export(world: World, args: argparse.Namespace) -> None:
    events = await _all_events(world, args.run_id)
    data = b"".join(encode_event(e) + b"\n" for e in events)
    await asyncio.to_thread(Path(args.file).write_bytes, data)
    print(f"wrote {len(events)} events of run {args.run_id} to {args.file}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldflow", description="Inspect worldflow runs.")
    parser.add_argument(
        "--world", help="world URL (default: $WORLDFLOW_WORLD or file://./.worldflow)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--status", choices=[s.value for s in RunStatus])
    runs.add_argument("--workflow", help="registered workflow name (module:qualname)")
    runs.add_argument("--resource", help="resource id")
    runs.add_argument("--limit", type=int, default=50)
    runs.set_defaults(handler=_runs)
    show = commands.add_parser("show", help="a run's status, input, result and timeline")
    show.add_argument("run_id")
    show.set_defaults(handler=_show)
    events = commands.add_parser("events", help="a run's event log as JSON lines")
    events.add_argument("run_id")
    events.set_defaults(handler=_events)
    export = commands.add_parser("export", help="write a run's log to a history file")
    export.add_argument("run_id")
    export.add_argument("file")
    export.set_defaults(handler=_export)
    return parser


async def _amain(args: argparse.Namespace) -> None:
    world = await open_world(_world_url(args.world))
    try:
        await args.handler(world, args)
    finally:
        await world.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a worldflow error, 2 bad usage)."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_amain(args))
    except WorldflowError as exc:
        print(f"worldflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `worldflow events RUN | head`: the reader left, not an error
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
