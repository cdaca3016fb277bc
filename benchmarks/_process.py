"""Child processes for the workloads that need one (W5 kills one, W7 measures one's RSS).

A child is ``python -m benchmarks.<module> ...``; it reports by printing one JSON object per
line on stdout, and the parent reads them as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Child", "emit"]

_ROOT = Path(__file__).resolve().parent.parent


def emit(**message: Any) -> None:
    """In a child: send one message to the parent."""
    sys.stdout.write(msgspec.json.encode(message).decode() + "\n")
    sys.stdout.flush()


class Child:
    """A running child: read its messages, wait for it, kill it."""

    def __init__(self, process: asyncio.subprocess.Process, module: str, log: Path) -> None:
        self._process = process
        self.module = module
        self._log = log

    @classmethod
    async def spawn(cls, module: str, *args: str, log: Path, stdin: bool = False) -> Child:
        """Start ``python -m module args`` from the repository root, its stderr going to
        ``log`` (a file, so a chatty child never blocks on a full pipe); with ``stdin``, a
        pipe to its standard input (:meth:`send`)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                cwd=_ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin else None,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        return cls(process, module, log)

    async def message(self) -> dict[str, Any]:
        """The next message; ``RuntimeError`` with the child's stderr if it exits first."""
        assert self._process.stdout is not None
        line = await self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.module} exited without a report: {await self._stderr()}")
        message: dict[str, Any] = msgspec.json.decode(line)
        return message

    async def send(self, line: str) -> None:
        """Write one line to the child's stdin (spawned with ``stdin=True``)."""
        pipe = self._process.stdin
        assert pipe is not None, "spawned without stdin=True"
        pipe.write(line.encode() + b"\n")
        await pipe.drain()

    @property
    def exited(self) -> bool:
        """Whether the child has exited (and been reaped)."""
        return self._process.returncode is not None

    async def wait(self) -> int:
        """Wait for the child to exit; its exit status."""
        return await self._process.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash."""
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)

    async def _stderr(self) -> str:
        await self._process.wait()
        text = self._log.read_text(errors="replace").strip()
        return text[-2000:] or f"(no stderr; exit status {self._process.returncode})"

    async def aclose(self) -> None:
        """Kill the child if it still runs, and reap it."""
        pipe = self._process.stdin
        if pipe is not None and not pipe.is_closing():
            pipe.close()
        if self._process.returncode is None:
            self.kill()
        await self._process.wait()
