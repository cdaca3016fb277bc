"""The remote world's HTTP client: one pooled aiohttp session, retries with backoff, and
errors turned back into the classes they were on the server.

A request that could not reach the server (refused, reset, cut, 502/503/504) is sent again
after a backoff (50 ms doubling to 2 s, with jitter) until ``retry_for`` seconds have passed,
so a restarting server costs a pause, not an error. Writes carry an ``Idempotency-Key`` that
stays the same across those retries, so a write whose answer was lost is not done twice.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Final

import aiohttp

from worldflow.errors import (
    ConfigurationError,
    EntityConflictError,
    InvalidEventError,
    NotFoundError,
    WorldError,
    WorldflowError,
    WorldNotAvailableError,
    error_from_code,
)
from worldflow.worlds._wire import IDEMPOTENCY_HEADER, PREFIX, ErrorBody, decode

__all__ = ["Transport"]

_RETRY_STATUSES: Final = frozenset({502, 503, 504})
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 2.0
_CONNECT_TIMEOUT: Final = 5.0
_LARGE_BODY: Final = 512 * 1024
_READ_SLACK: Final = 30.0
"""Seconds an answer may take beyond the time the request asked the server to wait."""

_BY_STATUS: Final[Mapping[int, type[WorldflowError]]] = {
    400: InvalidEventError,
    404: NotFoundError,
    409: EntityConflictError,
    413: InvalidEventError,
    422: InvalidEventError,
}

Params = Mapping[str, str | int | float | list[str]]


class Unreachable(Exception):
    """A request did not get an answer (to retry); carries the cause for the final error."""


class Transport:
    """HTTP calls to one World API server.

    Args:
        base_url: The server's URL (``http://127.0.0.1:8642``, or the app's mount point).
        token: The bearer token; ``None`` sends none.
        retry_for: Seconds to keep retrying a call that gets no answer; ``None``: forever.
        ssl_context: For ``https://``: a context, ``False`` to skip verification, ``None``
            for the default checks.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        retry_for: float | None,
        ssl_context: ssl.SSLContext | bool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url + PREFIX
        self._retry_for = retry_for
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.requests = 0
        """HTTP requests sent (retries included): for benchmarks' requests per step."""

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise WorldError(f"this RemoteWorld ({self.base_url}) was closed with aclose()")
        session = self._session
        if session is None or session.closed:
            # No limit on connections: long-polls (one per waiter) must never hold up writes.
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl, keepalive_timeout=30.0)
            session = self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, raise_for_status=False
            )
        return session

    async def aclose(self) -> None:
        """Close the session and its connections. Idempotent."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Params | None = None,
        write: bool = False,
        waits: float = 0.0,
        retry_for: float | bool | None = True,
    ) -> bytes:
        """Send a request and return the body of its success answer.

        ``write`` adds an idempotency key (the same for every retry); ``waits`` is how long
        the server may hold the request (a long-poll). ``retry_for=False`` tries once.

        Raises:
            WorldflowError: the server's error, as its class.
            WorldError: no answer within the retry budget.
        """
        headers = {IDEMPOTENCY_HEADER: os.urandom(16).hex()} if write else None
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=waits + _READ_SLACK
        )
        url = self._root + path
        budget = self._retry_for if retry_for is True else (retry_for or 0.0)
        deadline = None if budget is None else time.monotonic() + budget
        attempt = 0
        while True:
            session = self._open()
            self.requests += 1
            # A large body goes as a file object (aiohttp sends it without blocking the loop);
            # a fresh one per attempt, read from the start.
            data = io.BytesIO(body) if body is not None and len(body) > _LARGE_BODY else body
            try:
                async with session.request(
                    method, url, data=data, params=params, headers=headers, timeout=timeout
                ) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                cause: str = f"{type(exc).__name__}: {exc}"
            else:
                if status < 300:
                    return answer
                if status not in _RETRY_STATUSES:
                    raise self.error(status, answer)
                cause = f"HTTP {status}"
            attempt = await self.backoff(attempt, deadline, cause)

    async def backoff(self, attempt: int, deadline: float | None, cause: str) -> int:
        """Sleep before retry ``attempt + 1``; raise when the budget is spent."""
        pause = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2**attempt) * random.uniform(0.5, 1.0)
        if deadline is not None and time.monotonic() + pause > deadline:
            raise WorldError(
                f"the world server at {self.base_url} did not answer ({cause}); "
                "is `worldflow serve` running there?"
            )
        await asyncio.sleep(pause)
        return attempt + 1

    def retry_deadline(self) -> float | None:
        """When a call started now stops retrying (``None``: never)."""
        return None if self._retry_for is None else time.monotonic() + self._retry_for

    async def lines(self, path: str, params: Params) -> AsyncIterator[bytes]:
        """The lines of a streamed answer (NDJSON), as they come; no retries (the caller
        reconnects from where it got to).

        Raises:
            Unreachable: the connection failed or was cut.
            WorldflowError: the server refused the request.
        """
        session = self._open()
        self.requests += 1
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=_READ_SLACK + 30.0
        )
        try:
            async with session.get(self._root + path, params=params, timeout=timeout) as response:
                if response.status >= 300:
                    data = await response.read()
                    if response.status in _RETRY_STATUSES:
                        raise Unreachable(f"HTTP {response.status}")
                    raise self.error(response.status, data)
                buffer = b""
                async for piece in response.content.iter_any():
                    buffer += piece
                    while (end := buffer.find(b"\n")) >= 0:
                        line, buffer = buffer[:end], buffer[end + 1 :]
                        yield line
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    def error(self, status: int, data: bytes) -> WorldflowError:
        """The error an answer stands for: its code's class, else one that fits the status."""
        try:
            body = decode(data, ErrorBody)
        except WorldflowError:
            body = None
        if status in (401, 403):
            return ConfigurationError(
                f"the world server at {self.base_url} refused the request (HTTP {status}): "
                "pass the server's token (token=... or WORLDFLOW_TOKEN)"
            )
        if body is None:
            if status == 404:
                return WorldNotAvailableError(
                    f"{self.base_url} does not serve the World API at {PREFIX}: is it a "
                    "`worldflow serve` server of a matching version?"
                )
            text = data[:200].decode("utf-8", "replace")
            cls = _BY_STATUS.get(status, WorldError)
            return cls(f"HTTP {status} from the world server: {text}")
        error = error_from_code(body.code, body.message, body.details)
        if type(error) is WorldflowError:  # a code this version does not know
            return _BY_STATUS.get(status, WorldError)(body.message)
        return error
