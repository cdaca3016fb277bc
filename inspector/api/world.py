"""The World API (``/_world/v1``): the app's world, served to remote engines and clients.

The server side of :mod:`worldflow.worlds._wire` (routes and bodies are described there); the
client is :class:`~worldflow.worlds._remote.RemoteWorld`. Every handler is one call on the
hosted world, so its rules, validation and errors are the hosted world's. Writes are answered
through an :class:`~worldflow.inspector._idempotency.IdempotencyStore`; waits (run and world
notifications, queue leases) are long-polls capped at ``LONG_POLL_MAX`` and end early when
the app shuts down, so a restart does not wait for idle engines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from worldflow.errors import InvalidEventError, WorldflowError, error_details
from worldflow.inspector._idempotency import Answer
from worldflow.inspector._routes import route
from worldflow.inspector.api._world_common import (
    STATE,
    TAGS,
    Handler,
    State,
    cap_wait,
    idempotent,
    json_response,
    parse_query,
    respond,
    until_closing,
    world_of,
)
from worldflow.inspector.api.world_engines import ENGINE_ROUTES
from worldflow.worlds import (
    AnyEvent,
    EventResult,
    Fence,
    Hook,
    Lease,
    Page,
    Step,
    Wait,
    WorkflowRun,
)
from worldflow.worlds._wire import (
    IDEMPOTENCY_HEADER,
    PREFIX,
    AckBody,
    AppendBody,
    EnqueueBody,
    Enqueued,
    ErrorBody,
    ExtendBody,
    HookByTokenQuery,
    LeaseBody,
    Leases,
    ListEventsQuery,
    ListHooksQuery,
    ListRunsQuery,
    ListWaitsQuery,
    NackBody,
    PageQuery,
    RawAppendBody,
    ReadStreamQuery,
    Refused,
    RunChanged,
    StreamFrame,
    StreamLength,
    StreamList,
    StreamWriteBody,
    WaitRunQuery,
    WaitWorldQuery,
    WorldChanged,
    decode,
    encode,
)

__all__ = ["ROUTES", "add_routes"]

HEARTBEAT_EVERY = 15.0
"""Seconds between heartbeat lines of an idle followed stream (so a cut is noticed)."""


# -- event log -------------------------------------------------------------------------------


@route(body=AppendBody, responses={200: EventResult}, errors_on=(404, 409), tags=TAGS)
async def append(request: web.Request) -> web.Response:
    """Append a batch of events to a run's log, atomically (the hosted world's rules)."""
    run_id = request.match_info["run_id"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        try:
            batch = decode(body, AppendBody)
            events: list[Any] = batch.events
            fence, expected_seq = batch.fence, batch.expected_seq
        except InvalidEventError:
            events, fence, expected_seq = _events_up_to_the_bad_one(body)
        try:
            result = await world.append(run_id, events, fence=fence, expected_seq=expected_seq)
        except InvalidEventError as exc:
            last = events[-1] if events else None
            if isinstance(last, _Undecodable) and _Undecodable.__name__ in exc.message:
                raise last.error from None
            raise
        return 200, encode(result)

    return respond(await idempotent(request, compute))


class _Undecodable:
    """Stands in the batch for an event the client's validation refused (a :class:`Refused`
    marker), so the hosted world refuses the batch at that event's place: an earlier
    event's own error comes first, as it would locally."""

    def __init__(self, error: InvalidEventError) -> None:
        self.error = error


def _events_up_to_the_bad_one(body: bytes) -> tuple[list[Any], Fence | None, int | None]:
    """The batch up to its first :class:`Refused` marker (as an :class:`_Undecodable`);
    an event that neither decodes nor is a marker is refused here with msgspec's message."""
    batch = decode(body, RawAppendBody)  # a body that is not a batch at all: 400 now
    events: list[Any] = []
    for i, item in enumerate(batch.events):
        try:
            events.append(decode(item, AnyEvent))  # type: ignore[arg-type]
        except InvalidEventError as exc:
            try:
                marker = decode(item, Refused)
            except InvalidEventError:
                text = exc.message.replace("invalid request body: ", "")
                raise InvalidEventError(f"event {i} of the batch: {text}") from None
            events.append(_Undecodable(InvalidEventError(marker.message)))
            break
    return events, batch.fence, batch.expected_seq


@route(query=ListEventsQuery, responses={200: Page[AnyEvent]}, errors_on=(404,), tags=TAGS)
async def list_events(request: web.Request) -> web.Response:
    """A run's events with ``seq > after_seq``, in order."""
    q = parse_query(request, ListEventsQuery)
    page = await world_of(request).list_events(
        request.match_info["run_id"], after_seq=q.after_seq, limit=q.limit
    )
    return json_response(page)


# -- run store -------------------------------------------------------------------------------


@route(responses={200: WorkflowRun}, errors_on=(404,), tags=TAGS)
async def get_run(request: web.Request) -> web.Response:
    """One run's view."""
    return json_response(await world_of(request).get_run(request.match_info["run_id"]))


@route(query=ListRunsQuery, responses={200: Page[WorkflowRun]}, tags=TAGS)
async def list_runs(request: web.Request) -> web.Response:
    """Runs matching every filter; ``status`` may repeat, ``metadata`` is a JSON object."""
    q = parse_query(request, ListRunsQuery, lists=("status",))
    metadata = None if q.metadata is None else decode(q.metadata, dict[str, str])
    if q.order not in ("asc", "desc"):
        raise InvalidEventError(f"query `order` must be 'asc' or 'desc', got {q.order!r}")
    page = await world_of(request).list_runs(
        workflow_name=q.workflow_name,
        status=q.status,
        resource_id=q.resource_id,
        metadata=metadata,
        created_after=q.created_after,
        created_before=q.created_before,
        order="asc" if q.order == "asc" else "desc",
        limit=q.limit,
        cursor=q.cursor,
        forked_from=q.forked_from,
    )
    return json_response(page)


@route(responses={204: None}, errors_on=(404, 409), tags=TAGS)
async def purge(request: web.Request) -> web.Response:
    """Delete a terminal run and everything of it."""
    run_id = request.match_info["run_id"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        await world.purge(run_id)
        return 204, b""

    return respond(await idempotent(request, compute))


@route(responses={200: Step}, errors_on=(404,), tags=TAGS)
async def get_step(request: web.Request) -> web.Response:
    """One step of a run."""
    info = request.match_info
    return json_response(await world_of(request).get_step(info["run_id"], info["step_id"]))


@route(query=PageQuery, responses={200: Page[Step]}, errors_on=(404,), tags=TAGS)
async def list_steps(request: web.Request) -> web.Response:
    """A run's steps in creation order."""
    q = parse_query(request, PageQuery)
    page = await world_of(request).list_steps(
        request.match_info["run_id"], limit=q.limit, cursor=q.cursor
    )
    return json_response(page)


@route(query=HookByTokenQuery, responses={200: Hook}, errors_on=(404,), tags=TAGS)
async def get_hook_by_token(request: web.Request) -> web.Response:
    """The live hook holding ``token``."""
    q = parse_query(request, HookByTokenQuery)
    return json_response(await world_of(request).get_hook_by_token(q.token))


@route(query=ListHooksQuery, responses={200: Page[Hook]}, errors_on=(404,), tags=TAGS)
async def list_hooks(request: web.Request) -> web.Response:
    """Hooks of one run or of the world, in creation order."""
    q = parse_query(request, ListHooksQuery)
    page = await world_of(request).list_hooks(
        run_id=q.run_id, status=q.status, limit=q.limit, cursor=q.cursor
    )
    return json_response(page)


@route(query=ListWaitsQuery, responses={200: Page[Wait]}, errors_on=(404,), tags=TAGS)
async def list_waits(request: web.Request) -> web.Response:
    """Waits of one run or of the world, in creation order."""
    q = parse_query(request, ListWaitsQuery)
    page = await world_of(request).list_waits(
        run_id=q.run_id, status=q.status, limit=q.limit, cursor=q.cursor
    )
    return json_response(page)


# -- queue -----------------------------------------------------------------------------------


@route(body=EnqueueBody, responses={200: Enqueued}, tags=TAGS)
async def enqueue(request: web.Request) -> web.Response:
    """Add a message to a queue (one waiting message per queue idempotency key)."""
    queue = request.match_info["queue"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, EnqueueBody)
        message_id = await world.enqueue(
            queue, b.message, idempotency_key=b.idempotency_key, delay=b.delay
        )
        return 200, encode(Enqueued(message_id=message_id))

    return respond(await idempotent(request, compute))


@route(body=LeaseBody, responses={200: Leases}, tags=TAGS)
async def lease(request: web.Request) -> web.Response:
    """Take due messages, waiting up to ``wait`` seconds for one (a long-poll).

    Leases whose answer cannot be delivered (the caller went away) are given back at once.
    """
    queue = request.match_info["queue"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, LeaseBody)
        taken = await until_closing(
            request,
            world.lease(
                queue,
                lease_for=b.lease_for,
                max_messages=b.max_messages,
                wait=cap_wait(b.wait),
                workflows=b.workflows,
                engine_id=b.engine_id,
            ),
            [],
        )
        return 200, encode(Leases(leases=taken))

    answer = await idempotent(request, compute)
    transport = request.transport
    if transport is None or transport.is_closing():
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None:
            request.app[STATE].idempotency.forget(key)
        for taken in decode(answer[1], Leases).leases:
            with contextlib.suppress(WorldflowError):
                await world.nack(taken)
    return respond(answer)


@route(body=AckBody, responses={204: None}, errors_on=(409,), tags=TAGS)
async def ack(request: web.Request) -> web.Response:
    """Done with a leased message."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        await world.ack(decode(body, AckBody).lease)
        return 204, b""

    return respond(await idempotent(request, compute))


@route(body=NackBody, responses={204: None}, errors_on=(409,), tags=TAGS)
async def nack(request: web.Request) -> web.Response:
    """Give a leased message back, deliverable after ``delay`` seconds."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, NackBody)
        await world.nack(b.lease, delay=b.delay)
        return 204, b""

    return respond(await idempotent(request, compute))


@route(body=ExtendBody, responses={200: Lease}, errors_on=(409,), tags=TAGS)
async def extend(request: web.Request) -> web.Response:
    """Keep a lease ``lease_for`` more seconds."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, ExtendBody)
        return 200, encode(await world.extend(b.lease, lease_for=b.lease_for))

    return respond(await idempotent(request, compute))


# -- streams ---------------------------------------------------------------------------------


@route(body=StreamWriteBody, responses={200: StreamLength}, errors_on=(404, 409), tags=TAGS)
async def write_stream(request: web.Request) -> web.Response:
    """Append chunks to a run's stream."""
    info = request.match_info
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, StreamWriteBody)
        length = await world.write_stream(info["run_id"], info["name"], b.chunks)
        return 200, encode(StreamLength(length=length))

    return respond(await idempotent(request, compute))


@route(responses={204: None}, errors_on=(404,), tags=TAGS)
async def close_stream(request: web.Request) -> web.Response:
    """Mark a stream finished."""
    info = request.match_info
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        await world.close_stream(info["run_id"], info["name"])
        return 204, b""

    return respond(await idempotent(request, compute))


@route(responses={200: StreamList}, errors_on=(404,), tags=TAGS)
async def list_streams(request: web.Request) -> web.Response:
    """A run's streams."""
    streams = await world_of(request).list_streams(request.match_info["run_id"])
    return json_response(StreamList(streams=streams))


@route(query=ReadStreamQuery, responses={200: StreamFrame}, errors_on=(404,), tags=TAGS)
async def read_stream(request: web.Request) -> web.StreamResponse:
    """A stream's chunks from ``start`` as NDJSON lines (:class:`StreamFrame`), live while
    ``follow``; the last line is ``{"end": true}`` or ``{"error": ...}``."""
    info = request.match_info
    q = parse_query(request, ReadStreamQuery)
    chunks = aiter(
        world_of(request).read_stream(info["run_id"], info["name"], start=q.start, follow=q.follow)
    )
    # The first chunk is awaited before answering, so an unknown stream is a plain 404.
    pending: asyncio.Future[Any] = asyncio.ensure_future(anext(chunks))
    try:
        done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_EVERY)
        if done and pending.exception() is not None:
            if isinstance(pending.exception(), StopAsyncIteration):
                return _ndjson_lines([StreamFrame(end=True)])
            pending.result()  # raises: the error middleware answers it
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await _pump(request, response, chunks, pending)
        return response
    finally:
        await _settle(pending)
        with contextlib.suppress(BaseException):
            await chunks.aclose()  # type: ignore[attr-defined]


def _ndjson_lines(frames: list[StreamFrame]) -> web.Response:
    body = b"".join(encode(f) + b"\n" for f in frames)
    return web.Response(body=body, headers={"Content-Type": "application/x-ndjson"})


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    chunks: AsyncIterator[Any],
    pending: asyncio.Future[Any],
) -> None:
    closing = request.app[STATE].closing
    try:
        while True:
            stop = asyncio.ensure_future(closing.wait())
            try:
                done, _ = await asyncio.wait(
                    {pending, stop}, timeout=HEARTBEAT_EVERY, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stop.cancel()
            if pending not in done:
                if closing.is_set():
                    return  # cut without an end line: the client reads on from its next index
                await response.write(encode(StreamFrame(heartbeat=True)) + b"\n")
                continue
            exc = pending.exception()
            if isinstance(exc, StopAsyncIteration):
                await response.write(encode(StreamFrame(end=True)) + b"\n")
                return
            if isinstance(exc, WorldflowError):
                details = error_details(exc) or None
                error = ErrorBody(code=exc.code, message=exc.message, details=details)
                await response.write(encode(StreamFrame(error=error)) + b"\n")
                return
            chunk = pending.result()
            await response.write(encode(StreamFrame(index=chunk.index, data=chunk.data)) + b"\n")
            pending = asyncio.ensure_future(anext(chunks))
    finally:
        await _settle(pending)


async def _settle(pending: asyncio.Future[Any]) -> None:
    """Cancel the read in flight and wait for it, so the stream's generator can be closed."""
    pending.cancel()
    with contextlib.suppress(BaseException):
        await pending


# -- notifications ---------------------------------------------------------------------------


@route(query=WaitRunQuery, responses={200: RunChanged}, errors_on=(404,), tags=TAGS)
async def wait_for_run(request: web.Request) -> web.Response:
    """Answer once the run's ``last_seq`` exceeds ``after_seq`` (or at ``timeout``)."""
    run_id = request.match_info["run_id"]
    q = parse_query(request, WaitRunQuery)
    world = world_of(request)
    now = (await world.get_run(run_id)).last_seq  # an unknown run is a plain 404 at once
    wait = world.wait_for_run(
        run_id, after_seq=q.after_seq, timeout=cap_wait(q.timeout), terminal=q.terminal
    )
    last_seq = await until_closing(request, wait, now)
    ended = False
    if q.terminal and last_seq > q.after_seq:  # woken at the end, or by the timeout?
        ended = (await world.get_run(run_id)).status.is_terminal
    return json_response(RunChanged(last_seq=last_seq, terminal=ended))


@route(query=WaitWorldQuery, responses={200: WorldChanged}, tags=TAGS)
async def wait_for_world(request: web.Request) -> web.Response:
    """Answer once the world's change counter exceeds ``after`` (or at ``timeout``)."""
    q = parse_query(request, WaitWorldQuery)
    world = world_of(request)
    epoch = request.app[STATE].epoch
    now = await world.wait_for_world(after=0, timeout=0)
    if q.epoch is not None and q.epoch != epoch:
        return json_response(WorldChanged(changes=now, epoch=epoch))  # counted since a restart
    changes = await until_closing(
        request, world.wait_for_world(after=q.after, timeout=cap_wait(q.timeout)), now
    )
    return json_response(WorldChanged(changes=changes, epoch=epoch))


# -- mounting --------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/runs/{run_id}/events", append),
    ("GET", "/runs/{run_id}/events", list_events),
    ("GET", "/runs", list_runs),
    ("GET", "/runs/{run_id}", get_run),
    ("DELETE", "/runs/{run_id}", purge),
    ("GET", "/runs/{run_id}/steps", list_steps),
    ("GET", "/runs/{run_id}/steps/{step_id}", get_step),
    ("GET", "/hooks/by-token", get_hook_by_token),
    ("GET", "/hooks", list_hooks),
    ("GET", "/waits", list_waits),
    ("POST", "/queues/{queue}/messages", enqueue),
    ("POST", "/queues/{queue}/leases", lease),
    ("POST", "/queues/{queue}/leases/{lease_id}/ack", ack),
    ("POST", "/queues/{queue}/leases/{lease_id}/nack", nack),
    ("POST", "/queues/{queue}/leases/{lease_id}/extend", extend),
    ("GET", "/runs/{run_id}/streams", list_streams),
    ("POST", "/runs/{run_id}/streams/{name}/chunks", write_stream),
    ("GET", "/runs/{run_id}/streams/{name}/chunks", read_stream),
    ("POST", "/runs/{run_id}/streams/{name}/close", close_stream),
    ("GET", "/runs/{run_id}/wait", wait_for_run),
    ("GET", "/wait", wait_for_world),
)
ROUTES += ENGINE_ROUTES


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].closing.set()


def add_routes(app: web.Application) -> None:
    """Mount the World API under ``/_world/v1`` on ``app``, serving its control plane's
    world (``app[CONTROL].world``)."""
    app[STATE] = State()
    app.on_shutdown.append(_on_shutdown)
    for method, path, handler in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
