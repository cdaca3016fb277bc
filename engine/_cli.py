"""The ``worldflow`` command: look at the runs in a world from a shell.

    worldflow runs [--status running] [--workflow NAME] [--resource ID] [--forked-from RUN]
                   [--limit N]
    worldflow show RUN_ID          # status, input, output or error, and the timeline
    worldflow events RUN_ID        # the raw event log, one JSON object per line
    worldflow export RUN_ID FILE   # the log as a history file (for worldflow.testing.replay)
    worldflow check FILE... --workflow MODULE:NAME
                                   # replay history files against the code as it is now:
                                   # the pre-deploy check that new code still fits old runs
    worldflow serve [--workflows MODULE[:ATTR] ...] [--host H] [--port P] [--token T]
                                   # the HTTP app (``_cli_serve``)
    worldflow start|cancel|suspend|resume|raise-event|resume-hook|rerun|fork|purge ...
                                   # act on runs, through --server URL or on the world
                                   # directly (``_cli_actions``)

The world is ``--world URL``, else ``$WORLDFLOW_WORLD``, else ``file://./.worldflow``. The
reading commands open a file world read-only, so the CLI can look while an engine is running
on it; ``serve`` and the direct actions open it for writing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from worldflow import _serde
from worldflow._cli_actions import ACTIONS, add_action_parsers, run_action
from worldflow._cli_serve import add_serve_parser, serve
from worldflow._registry import WorkflowFunction
from worldflow._timeline import build_timeline, format_timeline
from worldflow.errors import ConfigurationError, WorldflowError
from worldflow.testing._history import (
    ReplayDivergenceError,
    fetch_history,
    replay,
    write_history,
)
from worldflow.worlds import DEFAULT_WORLD_URL, RunStatus, World, encode_event, open_world

__all__ = ["main"]


def _writable_url(given: str | None) -> str:
    return given or os.environ.get("WORLDFLOW_WORLD") or DEFAULT_WORLD_URL


def _world_url(given: str | None) -> str:
    url = _writable_url(given)
    if url.startswith("file:") and "read_only=" not in url:
        url += ("&" if "?" in url else "?") + "read_only=1"
    return url


async def _runs(world: World, args: argparse.Namespace) -> None:
    status = RunStatus(args.status) if args.status else None
    page = await world.list_runs(
        workflow_name=args.workflow,
        status=status,
        resource_id=args.resource,
        forked_from=args.forked_from,
        limit=args.limit,
    )
    if not page.items:
        print("no runs")
        return
    print(f"{'run id':<32}  {'status':<9}  {'created (UTC)':<19}  workflow")
    for run in page.items:
        created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        mark = "  [corrupt log: `worldflow show` says where]" if run.corrupt else ""
        print(f"{run.run_id:<32}  {run.status:<9}  {created:<19}  {run.workflow_name}{mark}")
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
    if run.forked_from is not None:
        at = f" at step {run.forked_from_step}" if run.forked_from_step else " (from the start)"
        print(f"fork of   {run.forked_from}{at}")
    forks = await world.list_runs(forked_from=run.run_id, limit=11)
    if forks.items:
        names = ", ".join(f.run_id for f in forks.items[:10])
        more = " ..." if len(forks.items) > 10 else ""
        print(f"forks     {names}{more}  (worldflow runs --forked-from {run.run_id})")
    print(f"input     {_serde.decode(run.input)!r}")
    if run.status is RunStatus.COMPLETED:
        print(f"output    {_serde.decode(run.output)!r}")
    if run.error is not None:
        print(f"error     {run.error.name}: {run.error.message}")
    print("timeline")
    print(format_timeline(build_timeline(await fetch_history(world, args.run_id))))


async def _events(world: World, args: argparse.Namespace) -> None:
    out = sys.stdout.buffer
    for event in await fetch_history(world, args.run_id):
        out.write(encode_event(event) + b"\n")
    out.flush()


async def _export(world: World, args: argparse.Namespace) -> None:
    events = await fetch_history(world, args.run_id)
    count = await asyncio.to_thread(write_history, events, args.file)
    print(f"wrote {count} events of run {args.run_id} to {args.file}")


def _load_workflow(path: str) -> WorkflowFunction[..., Any]:
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise ConfigurationError(
            f"--workflow takes MODULE:NAME (e.g. shop.orders:checkout), not {path!r}"
        )
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigurationError(f"{module_name} has no {qualname!r}")
    if not isinstance(target, WorkflowFunction):
        raise ConfigurationError(f"{path} is not a @workflow function")
    return target


def _check(args: argparse.Namespace) -> int:
    sys.path.insert(0, os.getcwd())  # MODULE:NAME is found as `python -m` would find it
    workflow = _load_workflow(args.workflow)
    failures = 0
    for path in args.files:
        try:
            result = replay(path, workflow)
        except ReplayDivergenceError as exc:
            failures += 1
            print(f"DIVERGES  {path}\n{exc}\n")
        else:
            where = "finished" if result.finished else "waiting on " + ", ".join(result.blocked_on)
            print(f"ok        {path}  ({result.events} events, {result.status}, {where})")
    return 1 if failures else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worldflow", description="Inspect, steer and serve worldflow runs."
    )
    parser.add_argument(
        "--world", help="world URL (default: $WORLDFLOW_WORLD or file://./.worldflow)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--status", choices=[s.value for s in RunStatus])
    runs.add_argument("--workflow", help="registered workflow name (module:qualname)")
    runs.add_argument("--resource", help="resource id")
    runs.add_argument("--forked-from", metavar="RUN", help="the forks (and reruns) of RUN")
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
    check = commands.add_parser("check", help="replay history files against the current code")
    check.add_argument("files", nargs="+", help="history files written by export")
    check.add_argument("--workflow", required=True, help="the workflow, as MODULE:NAME")
    check.set_defaults(handler=None)
    add_serve_parser(commands)
    add_action_parsers(commands)
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
        if args.command == "check":
            return _check(args)
        if args.command == "serve":
            return serve(args, _writable_url(args.world))
        if args.command in ACTIONS:
            return asyncio.run(run_action(args, _writable_url(args.world)))
        asyncio.run(_amain(args))
    except WorldflowError as exc:
        print(f"worldflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `worldflow events RUN | head`: the reader left, not an error
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
