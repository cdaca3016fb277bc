"""The remote world: any world, served over HTTP by ``worldflow serve``, used from afar.

Each method is one request of the World API (:mod:`worldflow.worlds._wire`) on one pooled
aiohttp session; the hosted world applies its own rules, so this one adds none. Waits
(``wait_for_run``, ``wait_for_world``, ``lease(wait=)``) are long-polls, so an idle engine
sends one request per wait of up to ``LONG_POLL_MAX`` (5 s); a followed stream is one
streamed answer.
When the server goes away the calls retry with backoff until it is back (``retry_for``), and
waiters, leases and stream readers carry on from where they were.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit, urlunsplit

from worldflow.errors import (
    ConfigurationError,
    InvalidEventError,
    RunNotFoundError,
    WorldflowError,
    error_from_code,
)
from worldflow.worlds._events import AnyEvent, Event
from worldflow.worlds._permits import check_permit_arguments, check_permit_key
from worldflow.worlds._protocol import EventResult, SortOrder
from worldflow.worlds._records import (
    EngineInfo,
    Fence,
    Hook,
    HookStatus,
    Lease,
    Page,
    Permit,
    PermitGrant,
    QueueMessage,
    RunStatus,
    Step,
    StreamChunk,
    StreamInfo,
    Wait,
    WaitStatus,
    WorkflowInfo,
    WorkflowRun,
)
from worldflow.worlds._remote.transport import Params, Transport, Unreachable
from worldflow.worlds._validation import validate_event
from worldflow.worlds._wire import (
    LONG_POLL_MAX,
    AckBody,
    AppendBody,
    ClaimBody,
    EngineList,
    EnqueueBody,
    Enqueued,
    ErrorBody,
    ExtendBody,
    LeaseBody,
    Leases,
    NackBody,
    PermitAskBody,
    PermitList,
    PermitReleaseBody,
    PermitReleased,
    RegisterBody,
    ReleaseBody,
    Released,
    RunChanged,
    RunList,
    StreamFrame,
    StreamLength,
    StreamList,
    StreamWriteBody,
    WorkflowList,
    WorldChanged,
    decode,
    encode,
    refused,
)

__all__ = ["TOKEN_ENV", "RemoteWorld"]

TOKEN_ENV: Final = "WORLDFLOW_TOKEN"
"""The environment variable the token is read from when none is given."""

DEFAULT_RETRY_FOR: Final = 120.0
_PROBE_FOR: Final = 10.0
"""Seconds ``from_url`` waits for a server that does not answer yet (one starting up)."""

_EVENT_CLASSES: Final = AnyEvent.__args__


def _run(run_id: str) -> str:
    """``run_id`` as a path segment; no run has an empty id (the id rule), and a path cannot
    hold one, so asking for it is answered here."""
    if not run_id:
        raise RunNotFoundError("no run has the empty id")
    return _q(run_id)


def _q(segment: str) -> str:
    # An id no world accepts (a lone surrogate) still makes a path: the server finds nothing
    # under it, or refuses the batch naming the field, as a local world would.
    return quote(segment, safe="", errors="surrogatepass")


def _checked_body(
    run_id: str, batch: list[Any], fence: Fence | None, expected_seq: int | None
) -> bytes | None:
    """The batch's body with its first bad event replaced by a :class:`Refused` marker, or
    ``None`` when every event passes the shared validation.

    The marker keeps the refusal at its place in the batch, so the hosted world raises an
    earlier event's own error first, and the message is the one a local world gives.
    """
    parts: list[bytes] = []
    for event in batch:
        try:
            validate_event(event, run_id)
        except InvalidEventError as exc:
            parts.append(refused(exc))
            return b'{"events":[%s],"fence":%s,"expected_seq":%s}' % (
                b",".join(parts),
                encode(fence),
                encode(expected_seq),
            )
        parts.append(encode(event))
    return None


def _clean(params: dict[str, Any]) -> Params:
    return {k: v for k, v in params.items() if v is not None}


class RemoteWorld:
    """A world on a ``worldflow serve`` server, over its World API.

    Args:
        url: The server (``http://127.0.0.1:8642``), or where the app is mounted.
        token: The server's bearer token; default ``WORLDFLOW_TOKEN`` from the environment.
        retry_for: Seconds a call keeps retrying while the server cannot be reached
            (restarting, network cut) before it raises ``WorldError``; ``None``: forever.
        ssl_context: For ``https://``: a context, or ``False`` to skip verification.

    Example:
        >>> world = await open_world("http://127.0.0.1:8642", token="s3cret")  # doctest: +SKIP
        >>> async with Engine(world, workflows=[order]) as engine:  # doctest: +SKIP
        ...     run = await engine.start(order, "o-1")
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        retry_for: float | None = DEFAULT_RETRY_FOR,
        ssl_context: ssl.SSLContext | bool | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"invalid remote world URL {url!r}: use http://HOST:PORT or https://HOST[/PATH]"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigurationError(
                f"invalid remote world URL {url!r}: no query, fragment or credentials in it "
                "(pass the token with token=... or WORLDFLOW_TOKEN)"
            )
        base = urlunsplit((parts.scheme.lower(), parts.netloc, parts.path, "", ""))
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._http = Transport(base, token=token, retry_for=retry_for, ssl_context=ssl_context)
        self._epoch: str | None = None
        self._change_base = 0
        self._changes_seen = 0

    @classmethod
    async def from_url(cls, url: str, *, token: str | None = None) -> RemoteWorld:
        """Connect to the server at ``url`` (what ``open_world`` calls), checking that it
        answers, speaks the World API and takes the token."""
        world = cls(url, token=token)
        try:
            probe = {"after": 0, "timeout": 0}
            await world._http.call("GET", "/wait", params=probe, retry_for=_PROBE_FOR)
        except BaseException:
            await world.aclose()
            raise
        return world

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._http.base_url

    @property
    def requests(self) -> int:
        """How many HTTP requests this world has sent (retries included)."""
        return self._http.requests

    def __repr__(self) -> str:
        return f"RemoteWorld({self.url!r})"

    # -- EventLog --------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        """Append a batch atomically on the server (the hosted world's rules apply)."""
        if isinstance(events, Event) or not isinstance(events, Sequence):
            raise InvalidEventError(
                f"append() takes a sequence of events, not {type(events).__name__}"
            )
        batch = list(events)
        if not run_id:  # refused by the shared validation, or nothing to append
            for event in batch:
                validate_event(event, run_id)
        # Every event is checked here with the shared validation: JSON would hide some bad
        # values (a key 5 arrives as "5", a str payload as a JSON one), and a refused one is
        # sent as a marker, so the hosted world refuses the batch at its place.
        body = _checked_body(run_id, batch, fence, expected_seq)
        if body is None:
            body = encode(AppendBody(events=batch, fence=fence, expected_seq=expected_seq))
        data = await self._http.call("POST", f"/runs/{_run(run_id)}/events", body=body, write=True)
        return decode(data, EventResult)

    async def list_events(
        self, run_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> Page[AnyEvent]:
        """A run's events with ``seq > after_seq``."""
        params = _clean({"after_seq": after_seq, "limit": limit})
        data = await self._http.call("GET", f"/runs/{_run(run_id)}/events", params=params)
        return decode(data, Page[AnyEvent])

    # -- RunStore --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> WorkflowRun:
        """The run's view."""
        return decode(await self._http.call("GET", f"/runs/{_run(run_id)}"), WorkflowRun)

    async def list_runs(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        order: SortOrder = "desc",
        limit: int = 100,
        cursor: str | None = None,
        forked_from: str | None = None,
    ) -> Page[WorkflowRun]:
        """Runs matching every filter, in creation order."""
        statuses = None
        if status is not None:
            statuses = [str(status)] if isinstance(status, str) else [str(s) for s in status]
        params = _clean(
            {
                "workflow_name": workflow_name,
                "status": statuses,
                "resource_id": resource_id,
                "metadata": None if metadata is None else encode(metadata).decode(),
                "created_after": None if created_after is None else created_after.isoformat(),
                "created_before": None if created_before is None else created_before.isoformat(),
                "order": order,
                "limit": limit,
                "cursor": cursor,
                "forked_from": forked_from,
            }
        )
        data = await self._http.call("GET", "/runs", params=params)
        return decode(data, Page[WorkflowRun])

    async def get_step(self, run_id: str, step_id: str) -> Step:
        """One step of a run."""
        data = await self._http.call("GET", f"/runs/{_run(run_id)}/steps/{_q(step_id)}")
        return decode(data, Step)

    async def list_steps(
        self, run_id: str, *, limit: int = 1000, cursor: str | None = None
    ) -> Page[Step]:
        """A run's steps in creation order."""
        params = _clean({"limit": limit, "cursor": cursor})
        data = await self._http.call("GET", f"/runs/{_run(run_id)}/steps", params=params)
        return decode(data, Page[Step])

    async def get_hook_by_token(self, token: str) -> Hook:
        """The live hook holding ``token``."""
        data = await self._http.call("GET", "/hooks/by-token", params={"token": token})
        return decode(data, Hook)

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Hook]:
        """Hooks of one run or of the world."""
        params = _clean(
            {
                "run_id": run_id,
                "status": None if status is None else str(status),
                "limit": limit,
                "cursor": cursor,
            }
        )
        data = await self._http.call("GET", "/hooks", params=params)
        return decode(data, Page[Hook])

    async def list_waits(
        self,
        *,
        run_id: str | None = None,
        status: WaitStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Wait]:
        """Waits of one run or of the world."""
        params = _clean(
            {
                "run_id": run_id,
                "status": None if status is None else str(status),
                "limit": limit,
                "cursor": cursor,
            }
        )
        data = await self._http.call("GET", "/waits", params=params)
        return decode(data, Page[Wait])

    async def purge(self, run_id: str) -> None:
        """Delete a terminal run and everything of it."""
        await self._http.call("DELETE", f"/runs/{_run(run_id)}", write=True)

    # -- Queue -----------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Add a message to ``queue``, deliverable after ``delay`` seconds."""
        body = encode(EnqueueBody(message=message, idempotency_key=idempotency_key, delay=delay))
        data = await self._http.call("POST", f"/queues/{_q(queue)}/messages", body=body, write=True)
        return decode(data, Enqueued).message_id

    async def lease(
        self,
        queue: str,
        *,
        lease_for: float,
        max_messages: int = 1,
        wait: float = 0.0,
        workflows: Collection[str] | None = None,
        engine_id: str | None = None,
    ) -> list[Lease]:
        """Take due messages, waiting up to ``wait`` seconds (long-polls of up to 25 s)."""
        deadline = time.monotonic() + max(0.0, wait)
        served = None if workflows is None else list(workflows)
        while True:
            step = min(LONG_POLL_MAX, max(0.0, deadline - time.monotonic()))
            body = encode(
                LeaseBody(
                    lease_for=lease_for,
                    max_messages=max_messages,
                    wait=step,
                    workflows=served,
                    engine_id=engine_id,
                )
            )
            data = await self._http.call(
                "POST", f"/queues/{_q(queue)}/leases", body=body, write=True, waits=step
            )
            leases = decode(data, Leases).leases
            if leases or time.monotonic() >= deadline:
                return leases

    def _lease_path(self, lease: Lease, verb: str) -> str:
        return f"/queues/{_q(lease.queue)}/leases/{_q(lease.lease_id)}/{verb}"

    async def ack(self, lease: Lease) -> None:
        """Remove a leased message."""
        body = encode(AckBody(lease=lease))
        await self._http.call("POST", self._lease_path(lease, "ack"), body=body, write=True)

    async def nack(self, lease: Lease, *, delay: float = 0.0) -> None:
        """Give a leased message back, deliverable after ``delay`` seconds."""
        body = encode(NackBody(lease=lease, delay=delay))
        await self._http.call("POST", self._lease_path(lease, "nack"), body=body, write=True)

    async def extend(self, lease: Lease, *, lease_for: float) -> Lease:
        """Keep a lease ``lease_for`` more seconds."""
        body = encode(ExtendBody(lease=lease, lease_for=lease_for))
        data = await self._http.call(
            "POST", self._lease_path(lease, "extend"), body=body, write=True
        )
        return decode(data, Lease)

    # -- Streams ---------------------------------------------------------------------------

    def _stream_path(self, run_id: str, name: str, tail: str) -> str:
        return f"/runs/{_run(run_id)}/streams/{_q(name)}/{tail}"

    async def write_stream(self, run_id: str, name: str, chunks: Sequence[bytes]) -> int:
        """Append chunks to a run's stream; return its length."""
        data: list[bytes] = []
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidEventError(
                    f"stream chunk {i} is a {type(chunk).__name__}; chunks are bytes"
                )
            data.append(bytes(chunk))
        body = encode(StreamWriteBody(chunks=data))
        answer = await self._http.call(
            "POST", self._stream_path(run_id, name, "chunks"), body=body, write=True
        )
        return decode(answer, StreamLength).length

    async def close_stream(self, run_id: str, name: str) -> None:
        """Mark a stream finished (idempotent)."""
        await self._http.call("POST", self._stream_path(run_id, name, "close"), write=True)

    async def read_stream(
        self, run_id: str, name: str, *, start: int = 0, follow: bool = True
    ) -> AsyncIterator[StreamChunk]:
        """Chunks from ``start``; with ``follow``, live until the stream is closed.

        A read cut by the server (restart, network) is read again from the next index.
        """
        index = max(0, start)
        path = self._stream_path(run_id, name, "chunks")
        attempt = 0
        deadline = self._http.retry_deadline()
        while True:
            params = {"start": index, "follow": "true" if follow else "false"}
            try:
                async for line in self._http.lines(path, params):
                    frame = decode(line, StreamFrame)
                    attempt, deadline = 0, self._http.retry_deadline()
                    if frame.end:
                        return
                    if frame.error is not None:
                        raise self._frame_error(frame.error)
                    if frame.index is not None and frame.data is not None and frame.index >= index:
                        index = frame.index + 1
                        yield StreamChunk(index=frame.index, data=frame.data)
                cause = "the stream was cut"
            except Unreachable as exc:
                cause = str(exc)
            attempt = await self._http.backoff(attempt, deadline, cause)

    @staticmethod
    def _frame_error(error: ErrorBody) -> WorldflowError:
        return error_from_code(error.code, error.message, error.details)

    async def list_streams(self, run_id: str) -> list[StreamInfo]:
        """A run's streams."""
        data = await self._http.call("GET", f"/runs/{_run(run_id)}/streams")
        return decode(data, StreamList).streams

    # -- Notifications ---------------------------------------------------------------------

    async def wait_for_run(
        self,
        run_id: str,
        *,
        after_seq: int,
        timeout: float | None = None,
        terminal: bool = False,
    ) -> int:
        """The run's ``last_seq`` once it exceeds ``after_seq`` (with ``terminal``: and the
        run has ended), in long-polls of up to ``LONG_POLL_MAX``."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        path = f"/runs/{_run(run_id)}/wait"
        while True:
            step = LONG_POLL_MAX
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            params: dict[str, str | int | float] = {"after_seq": after_seq, "timeout": step}
            if terminal:
                params["terminal"] = "true"
            data = await self._http.call("GET", path, params=params, waits=step)
            changed = decode(data, RunChanged)
            done = changed.last_seq > after_seq and (changed.terminal or not terminal)
            if done or (deadline is not None and time.monotonic() >= deadline):
                return changed.last_seq

    async def wait_for_world(self, *, after: int, timeout: float | None = None) -> int:
        """The world's change counter once it exceeds ``after``.

        A restarted server counts from 0 again; this world's counter jumps past every value it
        returned before, so a waiter sees the restart as a change and nothing goes backwards.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            step = LONG_POLL_MAX
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            relative = after - self._change_base
            if relative < 0:  # ``after`` is from before a restart: any value now is a change
                relative, step = 0, 0.0
            params: dict[str, Any] = {"after": relative, "timeout": step}
            if self._epoch is not None:
                params["epoch"] = self._epoch
            data = await self._http.call("GET", "/wait", params=params, waits=step)
            answer = decode(data, WorldChanged)
            if self._epoch is not None and answer.epoch != self._epoch:
                self._change_base = self._changes_seen + 1
            self._epoch = answer.epoch
            changes = self._change_base + answer.changes
            self._changes_seen = max(self._changes_seen, changes)
            if changes > after or (deadline is not None and time.monotonic() >= deadline):
                return changes

    # -- Catalog ---------------------------------------------------------------------------

    async def publish_workflows(self, workflows: Sequence[WorkflowInfo]) -> None:
        """Store catalog entries (last publish of a name wins)."""
        body = encode(WorkflowList(workflows=list(workflows)))
        await self._http.call("POST", "/workflows", body=body, write=True)

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Every published entry, with the live engines serving each."""
        return decode(await self._http.call("GET", "/workflows"), WorkflowList).workflows

    async def get_workflow(self, name: str) -> WorkflowInfo:
        """The entry of ``name``."""
        return decode(await self._http.call("GET", f"/workflows/{_q(name)}"), WorkflowInfo)

    # -- Ownership -------------------------------------------------------------------------

    async def register_engine(self, *, workflows: Collection[str], ttl: float) -> EngineInfo:
        """Register a new engine, live for ``ttl`` seconds (on the server's clock)."""
        body = encode(RegisterBody(workflows=list(workflows), ttl=ttl))
        return decode(await self._http.call("POST", "/engines", body=body, write=True), EngineInfo)

    async def heartbeat(self, engine_id: str) -> EngineInfo:
        """Keep the engine live for another ``ttl`` seconds."""
        path = f"/engines/{_q(engine_id)}/heartbeat"
        return decode(await self._http.call("POST", path, write=True), EngineInfo)

    async def deregister_engine(self, engine_id: str) -> int:
        """Release the engine's runs and forget it."""
        data = await self._http.call("DELETE", f"/engines/{_q(engine_id)}", write=True)
        return decode(data, Released).count

    async def list_engines(self) -> list[EngineInfo]:
        """The live engines."""
        return decode(await self._http.call("GET", "/engines"), EngineList).engines

    async def claim_orphans(
        self, engine_id: str, *, workflows: Collection[str], limit: int
    ) -> list[WorkflowRun]:
        """Take up to ``limit`` orphaned runs of ``workflows`` for ``engine_id``."""
        body = encode(ClaimBody(workflows=list(workflows), limit=limit))
        path = f"/engines/{_q(engine_id)}/claims"
        return decode(await self._http.call("POST", path, body=body, write=True), RunList).runs

    async def release_runs(self, engine_id: str, run_ids: Collection[str]) -> int:
        """Release those of ``run_ids`` that ``engine_id`` owns."""
        body = encode(ReleaseBody(run_ids=list(run_ids)))
        path = f"/engines/{_q(engine_id)}/releases"
        return decode(await self._http.call("POST", path, body=body, write=True), Released).count

    # -- FlowControl -----------------------------------------------------------------------

    async def acquire_permit(
        self,
        key: str,
        holder: str,
        *,
        run_id: str,
        engine_id: str,
        limit: int,
        period: float | None = None,
        priority: int = 0,
    ) -> PermitGrant:
        """Ask the hosted world for a permit on ``key`` for ``holder``."""
        # Checked here as a local world checks them: JSON would turn some bad values into
        # good ones (True into a limit of 1), and the message names the argument.
        check_permit_arguments(key, holder, limit, period, priority)
        body = encode(
            PermitAskBody(
                key=key,
                holder=holder,
                run_id=run_id,
                engine_id=engine_id,
                limit=limit,
                period=period,
                priority=priority,
            )
        )
        return decode(await self._http.call("POST", "/permits", body=body, write=True), PermitGrant)

    async def release_permit(self, key: str, holder: str) -> bool:
        """Give back ``holder``'s permit on ``key`` (or take it out of the line)."""
        check_permit_key(key, holder)
        body = encode(PermitReleaseBody(key=key, holder=holder))
        data = await self._http.call("POST", "/permits/release", body=body, write=True)
        return decode(data, PermitReleased).removed

    async def list_permits(self, key: str) -> list[Permit]:
        """The permits that count on ``key``, then its line."""
        check_permit_key(key)
        data = await self._http.call("GET", "/permits", params={"key": key})
        return decode(data, PermitList).permits

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP session. Idempotent."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
