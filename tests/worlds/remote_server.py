"""A server process for the multi-process remote world test: the World API of a file world.

``python -m tests.worlds.remote_server PATH PORT`` serves ``FileWorld(PATH)`` through
``create_app`` on 127.0.0.1:PORT until SIGTERM, then stops cleanly (in-flight requests end,
long-polls answer at once, the world's lock is released).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from tests.worlds.served import world_app
from worldflow.worlds import FileWorld


async def main(path: str, port: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with FileWorld(path) as world:
        runner = web.AppRunner(world_app(world), handle_signals=False, shutdown_timeout=10.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            print("serving", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
