"""The CLI's action commands: steer runs through a server or directly on a world.

::

    worldflow start shop.orders:checkout '{"order": 1}' --run-id o-1
    worldflow cancel RUN [--reason TEXT]     worldflow suspend RUN     worldflow resume RUN
    worldflow raise-event RUN NAME JSON      worldflow resume-hook TOKEN JSON
    worldflow rerun RUN                      worldflow purge RUN
    worldflow fork RUN --from-step STEP --input '{"amount": 5}' [--run-id ID]

With ``--server URL`` (and ``--token T`` or ``$WORLDFLOW_TOKEN``) each command is one request
to a ``worldflow serve`` (the Dapr routes, ``/api/hooks/resume``, ``/api/runs/{id}/rerun``,
``/api/runs/{id}/fork``);
without, it opens the world (``--world``) for writing and acts on it directly as a
``worldflow.Client`` (nothing else may hold a file world's writer lock then): a started run
is queued for the engine that serves its workflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

from worldflow.errors import ConfigurationError

__all__ = ["ACTIONS", "add_action_parsers", "run_action"]

ACTIONS = (
    "start",
    "cancel",
    "suspend",
    "resume",
    "raise-event",
    "resume-hook",
    "rerun",
    "fork",
    "purge",
)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None


def add_action_parsers(commands: Any) -> None:
    """Add the action commands to the CLI's subcommands."""

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        parser.add_argument("--server", help="a worldflow serve URL (default: act on --world)")
        parser.add_argument("--token", help="the server's token (default: $WORLDFLOW_TOKEN)")
        parser.set_defaults(handler=None, action=name)
        return parser

    start = action("start", "start a run: WORKFLOW (its registered name) with one JSON argument")
    start.add_argument("workflow", help="the registered name, e.g. shop.orders:checkout")
    start.add_argument("input", nargs="?", type=_json_arg, help="JSON: the one argument")
    start.add_argument("--run-id", help="the run's id (default: a fresh one)")
    start.add_argument(
        "--workflows",
        action="append",
        default=[],
        metavar="MODULE",
        help="direct mode: the module defining WORKFLOW (else its name is looked up in the "
        "world's catalog of published workflows)",
    )
    cancel = action("cancel", "cancel a run")
    cancel.add_argument("run_id")
    cancel.add_argument("--reason", help="why (recorded with the cancellation; direct mode)")
    for name, text in (
        ("suspend", "pause a run"),
        ("resume", "unpause a run"),
        ("rerun", "start a new run with an old run's input"),
        ("purge", "delete a finished run"),
    ):
        action(name, text).add_argument("run_id")
    fork = action(
        "fork",
        "start a run that reuses RUN's results before a step and runs that step again",
    )
    fork.add_argument("run_id")
    fork.add_argument(
        "--from-step",
        help="the step to run again: its step id, or a name one call has "
        "(default: from the start, a rerun)",
    )
    fork.add_argument(
        "--input", type=_json_arg, help='JSON object: the step\'s new arguments, {"x": 1}'
    )
    fork.add_argument("--run-id", dest="new_run_id", help="the fork's run id")
    raise_event = action("raise-event", "raise a named event for a run")
    raise_event.add_argument("run_id")
    raise_event.add_argument("name")
    raise_event.add_argument("payload", nargs="?", type=_json_arg, help="JSON payload")
    resume_hook = action("resume-hook", "send a JSON payload to the hook holding TOKEN")
    resume_hook.add_argument("hook_token")
    resume_hook.add_argument("payload", nargs="?", type=_json_arg, help="JSON payload")


class _Failed(Exception):
    """An HTTP answer that is not a success."""


def _dapr(run_id: str) -> str:
    return f"/v1.0/workflows/dapr/{quote(run_id, safe='')}"


async def _over_http(args: argparse.Namespace) -> str:
    import aiohttp

    token = args.token or os.environ.get("WORLDFLOW_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = args.server.rstrip("/")
    method, path, body = "POST", "", None
    match args.action:
        case "start":
            query = f"?instanceID={quote(args.run_id, safe='')}" if args.run_id else ""
            path = f"/v1.0/workflows/dapr/{quote(args.workflow, safe='')}/start{query}"
            body = args.input
        case "cancel":
            path = _dapr(args.run_id) + "/terminate"
        case "suspend" | "resume" | "purge":
            verb = "pause" if args.action == "suspend" else args.action
            path = f"{_dapr(args.run_id)}/{verb}"
        case "raise-event":
            path = _dapr(args.run_id) + f"/raiseEvent/{quote(args.name, safe='')}"
            body = args.payload
        case "resume-hook":
            path, body = "/api/hooks/resume", {"token": args.hook_token, "data": args.payload}
        case "rerun":
            path = f"/api/runs/{quote(args.run_id, safe='')}/rerun"
        case "fork":
            path = f"/api/runs/{quote(args.run_id, safe='')}/fork"
            body = {"fromStep": args.from_step, "input": args.input, "runId": args.new_run_id}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base + path, data=data, headers=headers) as response,
    ):
        text = await response.text()
        if response.status >= 300:
            try:
                parsed = json.loads(text)
                message = parsed.get("message") or parsed.get("error") or text
            except (json.JSONDecodeError, AttributeError):
                message = text
            raise _Failed(f"HTTP {response.status}: {message}")
        answer = json.loads(text) if text.strip() else {}
    match args.action:
        case "start":
            return f"started run {answer['instanceID']}"
        case "resume-hook":
            return f"resumed the hook of run {answer['runId']}"
        case "rerun":
            return f"started run {answer['runId']} (a rerun of {args.run_id})"
        case "fork":
            return f"started run {answer['runId']} (a fork of {args.run_id})"
    return _done(args)


def _done(args: argparse.Namespace) -> str:
    verbs = {
        "cancel": "cancelled",
        "suspend": "suspended",
        "resume": "resumed",
        "purge": "purged",
    }
    if args.action == "raise-event":
        return f"raised event {args.name!r} for run {args.run_id}"
    return f"{verbs[args.action]} run {args.run_id}"


async def _direct(args: argparse.Namespace, world_url: str) -> str:
    from worldflow._cli_serve import load_workflows
    from worldflow._runtime.client import Client
    from worldflow.worlds import open_world

    target: Any = getattr(args, "workflow", None)
    for function in load_workflows(getattr(args, "workflows", [])):
        if target in (function.definition.name, function.__name__):
            target = function  # the code is here: bind the input to its signature
    world = await open_world(world_url)
    try:
        async with Client(world) as engine:
            match args.action:
                case "start":
                    # A name without the code is looked up in the world's catalog (the
                    # workflows an engine published); an engine consuming the queue runs it.
                    inputs = () if args.input is None else (args.input,)
                    run = await engine.start(target, *inputs, run_id=args.run_id)
                    return f"started run {run.run_id}"
                case "cancel":
                    await engine.cancel(args.run_id, args.reason)
                case "suspend":
                    await engine.suspend(args.run_id)
                case "resume":
                    await engine.resume(args.run_id)
                case "purge":
                    await engine.purge(args.run_id)
                case "raise-event":
                    await engine.raise_event(args.run_id, args.name, args.payload)
                case "resume-hook":
                    hook = await engine.resume_hook(args.hook_token, args.payload)
                    return f"resumed the hook of run {hook.run_id}"
                case "rerun":
                    new = await engine.rerun(args.run_id)
                    return f"started run {new.run_id} (a rerun of {args.run_id})"
                case "fork":
                    new = await engine.fork(
                        args.run_id,
                        from_step=args.from_step,
                        input=args.input,
                        run_id=args.new_run_id,
                    )
                    return f"started run {new.run_id} (a fork of {args.run_id})"
            return _done(args)
    finally:
        await world.aclose()


async def run_action(args: argparse.Namespace, world_url: str) -> int:
    """Run one action command; print what was done. Returns the exit status."""
    sys.path.insert(0, os.getcwd())
    try:
        if args.server:
            message = await _over_http(args)
        else:
            message = await _direct(args, world_url)
    except _Failed as exc:
        print(f"worldflow: {exc}", file=sys.stderr)
        return 1
    except TypeError as exc:  # the input does not fit the workflow's parameters
        raise ConfigurationError(str(exc)) from None
    print(message)
    return 0
