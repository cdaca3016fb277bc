"""``worldflow serve``: the HTTP app on a socket, for an Engine or a control plane only.

::

    worldflow serve --world file://./.worldflow --workflows shop.orders --token s3cret
    worldflow serve --workflows shop.orders:checkout --workflows billing:WORKFLOWS

With ``--workflows`` it runs an Engine for them (a module: every ``@workflow`` in it; a
``MODULE:ATTR``: one workflow or a list of them); without, it only records and steers runs
(workers elsewhere pick them up). It refuses a non-loopback ``--host`` without a token
(``--token`` or ``$WORLDFLOW_TOKEN``). SIGINT / SIGTERM stop it cleanly: it stops accepting,
lets in-flight requests finish, closes the engine (its runs resume on the next start) and the
world.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import os
import signal
import sys
from typing import Any

from worldflow._registry import WorkflowFunction
from worldflow.errors import ConfigurationError

__all__ = ["add_serve_parser", "load_workflows", "serve"]

DEFAULT_PORT = 8642
_SHUTDOWN_TIMEOUT = 10.0  # seconds in-flight requests get to finish on stop


def add_serve_parser(commands: Any) -> None:
    """Add ``serve`` to the CLI's subcommands."""
    serve_cmd = commands.add_parser(
        "serve",
        help="serve the HTTP app (Dapr workflow API, webhooks, inspector APIs)",
        description="Serve the worldflow HTTP app on a socket.",
    )
    serve_cmd.add_argument(
        "--workflows",
        action="append",
        default=[],
        metavar="MODULE[:ATTR]",
        help="run an engine for these workflows (repeatable); without it, a control plane only",
    )
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (8642; 0: any)")
    serve_cmd.add_argument(
        "--token", help="bearer token every API route requires (default: $WORLDFLOW_TOKEN)"
    )
    serve_cmd.add_argument(
        "--base-url", help="the public URL of this server, for webhook.url (default: bound URL)"
    )
    serve_cmd.add_argument(
        "--max-body-size", type=int, default=10 * 1024 * 1024, help="bytes (10 MiB)"
    )
    serve_cmd.set_defaults(handler=None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_workflows(specs: list[str]) -> list[WorkflowFunction[..., Any]]:
    """The workflows named by ``--workflows`` values: ``MODULE`` (every workflow defined in
    it) or ``MODULE:ATTR`` (a workflow, or a list or tuple of them)."""
    found: list[WorkflowFunction[..., Any]] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            message = f"--workflows {spec}: cannot import {module_name}: {exc}"
            raise ConfigurationError(message) from None
        if not attr:
            members = [v for v in vars(module).values() if isinstance(v, WorkflowFunction)]
            if not members:
                raise ConfigurationError(f"--workflows {spec}: the module has no @workflow")
            found.extend(members)
            continue
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise ConfigurationError(f"--workflows {spec}: {module_name} has no {attr!r}")
        items = list(target) if isinstance(target, list | tuple) else [target]
        for item in items:
            if not isinstance(item, WorkflowFunction):
                raise ConfigurationError(f"--workflows {spec}: {item!r} is not a @workflow")
            found.append(item)
    unique: list[WorkflowFunction[..., Any]] = []
    for wf in found:
        if wf not in unique:
            unique.append(wf)
    return unique


async def _serve(args: argparse.Namespace, world_url: str, token: str | None) -> None:
    from aiohttp import web

    from worldflow._runtime.client import Client
    from worldflow._runtime.engine import Engine
    from worldflow.inspector import create_app
    from worldflow.worlds import open_world

    workflows = load_workflows(args.workflows)
    world = await open_world(world_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Without workflows: a control plane only; engines elsewhere drive the runs.
        engine: Client = Engine(world, workflows) if workflows else Client(world)
        async with engine:
            base_url = args.base_url
            runner = web.AppRunner(
                create_app(
                    engine,
                    token=token,
                    base_url=base_url,
                    max_body_size=args.max_body_size,
                ),
                handle_signals=False,
                shutdown_timeout=_SHUTDOWN_TIMEOUT,
            )
            await runner.setup()
            try:
                site = web.TCPSite(runner, args.host, args.port)
                await site.start()
                host, port = runner.addresses[0][:2]
                shown = f"[{host}]" if ":" in host else host
                bound = f"http://{shown}:{port}"
                if not base_url:
                    from worldflow._webhooks import set_base_url

                    set_base_url(bound)
                served = ", ".join(w.definition.name for w in workflows) or "none (control plane)"
                print(f"worldflow serving on {bound} (world {world_url}; workflows: {served})")
                print("auth: bearer token required" if token else "auth: off (loopback only)")
                sys.stdout.flush()
                await stop.wait()
                print("worldflow: stopping (finishing in-flight requests)", flush=True)
            finally:
                await runner.cleanup()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await world.aclose()
    print("worldflow: stopped", flush=True)


def serve(args: argparse.Namespace, world_url: str) -> int:
    """Run ``worldflow serve``; returns the exit status."""
    token = args.token or os.environ.get("WORLDFLOW_TOKEN") or None
    if token is None and not _is_loopback(args.host):
        print(
            f"worldflow: refusing to serve on {args.host} without a token: anyone who can "
            "reach it could start and cancel runs. Pass --token T (or set WORLDFLOW_TOKEN), "
            "or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("worldflow serve needs aiohttp: pip install 'worldflow[inspector]'", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())  # --workflows MODULE is found as `python -m` would find it
    asyncio.run(_serve(args, world_url, token))
    return 0
