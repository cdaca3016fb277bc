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
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from worldflow.errors import InvalidEventError, WorldflowError, error_details
from worldflow.inspector._body import read_body
from worldflow.inspector._idempotency import Answer, IdempotencyStore
from worldflow.inspector._keys import CONTROL
from worldflow.inspector._routes import route
from worldflow.worlds import AnyEvent, EventResult, Hook, Lease, Page, Step, Wait, World
from worldflow.worlds._records import EngineInfo, Fence, WorkflowInfo, WorkflowRun
from worldflow.worlds._wire import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_TTL,
    LONG_POLL_MAX,
    PREFIX,
    AckBody,
    AppendBody,
    ClaimBody,
    EngineList,
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
    RegisterBody,
    ReleaseBody,
    Released,
    RunChanged,
    RunList,
    StreamFrame,
    StreamLength,
    StreamList,
    StreamWriteBody,
    WaitRunQuery,
    WaitWorldQuery,
    WorkflowList,
    WorldChanged,
    convert_query,
    decode,
    encode,
)

__all__ = ["add_routes"]

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEARTBEAT_EVERY = 15.0
"""Seconds between heartbeat lines of an idle followed stream (so a cut is noticed)."""


@dataclass
class _State:
    idempotency: IdempotencyStore = field(
        default_factory=lambda: IdempotencyStore(ttl=IDEMPOTENCY_TTL)
    )
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    closing: asyncio.Event = field(default_factory=asyncio.Event)


_STATE: web.AppKey[_State] = web.AppKey("worldflow.world_api.state", _State)

_JSON = "application/json"
_TAGS = ("world",)


def _world(request: web.Request) -> World:
    return request.app[CONTROL].world


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(body=encode(value), status=status, content_type=_JSON)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _query(request: web.Request, type_: type[T], *, lists: tuple[str, ...] = ()) -> T:
    query = request.query
    values: dict[str, Any] = {k: query.getall(k) if k in lists else query[k] for k in query}
    return convert_query(values, type_)


async def _idempotent(
    request: web.Request, compute: Callable[[bytes], Coroutine[Any, Any, Answer]]
) -> Answer:
    """Run a write once per ``Idempotency-Key`` (without a key: every time)."""
    body = await read_body(request)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return await compute(body)
    if not key or len(key) > 200:
        raise InvalidEventError(f"header `{IDEMPOTENCY_HEADER}` must be 1 to 200 characters")
    fingerprint = (request.method, request.path, hash(body))
    return await request.app[_STATE].idempotency.answer(key, fingerprint, lambda: compute(body))


def _respond(answer: Answer) -> web.Response:
    status, body = answer
    if status == 204:
        return _no_content()
    return web.Response(body=body, status=status, content_type=_JSON)


async def _until_closing(request: web.Request, wait: Coroutine[Any, Any, T], fallback: T) -> T:
    """``wait``'s value, or ``fallback`` if the app starts shutting down first."""
    closing = request.app[_STATE].closing
    if closing.is_set():
        wait.close()
        return fallback
    task = asyncio.ensure_future(wait)
    stop = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, WorldflowError):
        await task
    return fallback


def _cap(seconds: float) -> float:
    return min(max(0.0, seconds), LONG_POLL_MAX)


# -- event log -------------------------------------------------------------------------------


@route(body=AppendBody, responses={200: EventResult}, errors_on=(404, 409), tags=_TAGS)
async def append(request: web.Request) -> web.Response:
    """Append a batch of events to a run's log, atomically (the hosted world's rules)."""
    run_id = request.match_info["run_id"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        try:
            batch = decode(body, AppendBody)
            events: list[Any] = batch.events
            fence = batch.fence
        except InvalidEventError:
            events, fence = _events_up_to_the_bad_one(body)
        try:
            result = await world.append(run_id, events, fence=fence)
        except InvalidEventError as exc:
            last = events[-1] if events else None
            if isinstance(last, _Undecodable) and _Undecodable.__name__ in exc.message:
                raise last.error from None
            raise
        return 200, encode(result)

    return _respond(await _idempotent(request, compute))


class _Undecodable:
    """Stands in the batch for an event the client's validation refused (a :class:`Refused`
    marker), so the hosted world refuses the batch at that event's place: an earlier
    event's own error comes first, as it would locally."""

    def __init__(self, error: InvalidEventError) -> None:
        self.error = error


def _events_up_to_the_bad_one(body: bytes) -> tuple[list[Any], Fence | None]:
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
    return events, batch.fence


@route(query=ListEventsQuery, responses={200: Page[AnyEvent]}, errors_on=(404,), tags=_TAGS)
async def list_events(request: web.Request) -> web.Response:
    """A run's events with ``seq > after_seq``, in order."""
    q = _query(request, ListEventsQuery)
    page = await _world(request).list_events(
        request.match_info["run_id"], after_seq=q.after_seq, limit=q.limit
    )
    return _json(page)


# -- run store -------------------------------------------------------------------------------


@route(responses={200: WorkflowRun}, errors_on=(404,), tags=_TAGS)
async def get_run(request: web.Request) -> web.Response:
    """One run's view."""
    return _json(await _world(request).get_run(request.match_info["run_id"]))


@route(query=ListRunsQuery, responses={200: Page[WorkflowRun]}, tags=_TAGS)
async def list_runs(request: web.Request) -> web.Response:
    """Runs matching every filter; ``status`` may repeat, ``metadata`` is a JSON object."""
    q = _query(request, ListRunsQuery, lists=("status",))
    metadata = None if q.metadata is None else decode(q.metadata, dict[str, str])
    if q.order not in ("asc", "desc"):
        raise InvalidEventError(f"query `order` must be 'asc' or 'desc', got {q.order!r}")
    page = await _world(request).list_runs(
        workflow_name=q.workflow_name,
        status=q.status,
        resource_id=q.resource_id,
        metadata=metadata,
        created_after=q.created_after,
        created_before=q.created_before,
        order="asc" if q.order == "asc" else "desc",
        limit=q.limit,
        cursor=q.cursor,
    )
    return _json(page)


@route(responses={204: None}, errors_on=(404, 409), tags=_TAGS)
async def purge(request: web.Request) -> web.Response:
    """Delete a terminal run and everything of it."""
    run_id = request.match_info["run_id"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        await world.purge(run_id)
        return 204, b""

    return _respond(await _idempotent(request, compute))


@route(responses={200: Step}, errors_on=(404,), tags=_TAGS)
async def get_step(request: web.Request) -> web.Response:
    """One step of a run."""
    info = request.match_info
    return _json(await _world(request).get_step(info["run_id"], info["step_id"]))


@route(query=PageQuery, responses={200: Page[Step]}, errors_on=(404,), tags=_TAGS)
async def list_steps(request: web.Request) -> web.Response:
    """A run's steps in creation order."""
    q = _query(request, PageQuery)
    page = await _world(request).list_steps(
        request.match_info["run_id"], limit=q.limit, cursor=q.cursor
    )
    return _json(page)


@route(query=HookByTokenQuery, responses={200: Hook}, errors_on=(404,), tags=_TAGS)
async def get_hook_by_token(request: web.Request) -> web.Response:
    """The live hook holding ``token``."""
    q = _query(request, HookByTokenQuery)
    return _json(await _world(request).get_hook_by_token(q.token))


@route(query=ListHooksQuery, responses={200: Page[Hook]}, errors_on=(404,), tags=_TAGS)
async def list_hooks(request: web.Request) -> web.Response:
    """Hooks of one run or of the world, in creation order."""
    q = _query(request, ListHooksQuery)
    page = await _world(request).list_hooks(
        run_id=q.run_id, status=q.status, limit=q.limit, cursor=q.cursor
    )
    return _json(page)


@route(query=ListWaitsQuery, responses={200: Page[Wait]}, errors_on=(404,), tags=_TAGS)
async def list_waits(request: web.Request) -> web.Response:
    """Waits of one run or of the world, in creation order."""
    q = _query(request, ListWaitsQuery)
    page = await _world(request).list_waits(
        run_id=q.run_id, status=q.status, limit=q.limit, cursor=q.cursor
    )
    return _json(page)


# -- queue -----------------------------------------------------------------------------------


@route(body=EnqueueBody, responses={200: Enqueued}, tags=_TAGS)
async def enqueue(request: web.Request) -> web.Response:
    """Add a message to a queue (one waiting message per queue idempotency key)."""
    queue = request.match_info["queue"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, EnqueueBody)
        message_id = await world.enqueue(
            queue, b.message, idempotency_key=b.idempotency_key, delay=b.delay
        )
        return 200, encode(Enqueued(message_id=message_id))

    return _respond(await _idempotent(request, compute))


@route(body=LeaseBody, responses={200: Leases}, tags=_TAGS)
async def lease(request: web.Request) -> web.Response:
    """Take due messages, waiting up to ``wait`` seconds for one (a long-poll).

    Leases whose answer cannot be delivered (the caller went away) are given back at once.
    """
    queue = request.match_info["queue"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, LeaseBody)
        taken = await _until_closing(
            request,
            world.lease(
                queue,
                lease_for=b.lease_for,
                max_messages=b.max_messages,
                wait=_cap(b.wait),
                workflows=b.workflows,
                engine_id=b.engine_id,
            ),
            [],
        )
        return 200, encode(Leases(leases=taken))

    answer = await _idempotent(request, compute)
    transport = request.transport
    if transport is None or transport.is_closing():
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None:
            request.app[_STATE].idempotency.forget(key)
        for taken in decode(answer[1], Leases).leases:
            with contextlib.suppress(WorldflowError):
                await world.nack(taken)
    return _respond(answer)


@route(body=AckBody, responses={204: None}, errors_on=(409,), tags=_TAGS)
async def ack(request: web.Request) -> web.Response:
    """Done with a leased message."""
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        await world.ack(decode(body, AckBody).lease)
        return 204, b""

    return _respond(await _idempotent(request, compute))


@route(body=NackBody, responses={204: None}, errors_on=(409,), tags=_TAGS)
async def nack(request: web.Request) -> web.Response:
    """Give a leased message back, deliverable after ``delay`` seconds."""
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, NackBody)
        await world.nack(b.lease, delay=b.delay)
        return 204, b""

    return _respond(await _idempotent(request, compute))


@route(body=ExtendBody, responses={200: Lease}, errors_on=(409,), tags=_TAGS)
async def extend(request: web.Request) -> web.Response:
    """Keep a lease ``lease_for`` more seconds."""
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, ExtendBody)
        return 200, encode(await world.extend(b.lease, lease_for=b.lease_for))

    return _respond(await _idempotent(request, compute))


# -- streams ---------------------------------------------------------------------------------


@route(body=StreamWriteBody, responses={200: StreamLength}, errors_on=(404, 409), tags=_TAGS)
async def write_stream(request: web.Request) -> web.Response:
    """Append chunks to a run's stream."""
    info = request.match_info
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, StreamWriteBody)
        length = await world.write_stream(info["run_id"], info["name"], b.chunks)
        return 200, encode(StreamLength(length=length))

    return _respond(await _idempotent(request, compute))


@route(responses={204: None}, errors_on=(404,), tags=_TAGS)
async def close_stream(request: web.Request) -> web.Response:
    """Mark a stream finished."""
    info = request.match_info
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        await world.close_stream(info["run_id"], info["name"])
        return 204, b""

    return _respond(await _idempotent(request, compute))


@route(responses={200: StreamList}, errors_on=(404,), tags=_TAGS)
async def list_streams(request: web.Request) -> web.Response:
    """A run's streams."""
    streams = await _world(request).list_streams(request.match_info["run_id"])
    return _json(StreamList(streams=streams))


@route(query=ReadStreamQuery, responses={200: StreamFrame}, errors_on=(404,), tags=_TAGS)
async def read_stream(request: web.Request) -> web.StreamResponse:
    """A stream's chunks from ``start`` as NDJSON lines (:class:`StreamFrame`), live while
    ``follow``; the last line is ``{"end": true}`` or ``{"error": ...}``."""
    info = request.match_info
    q = _query(request, ReadStreamQuery)
    chunks = aiter(
        _world(request).read_stream(info["run_id"], info["name"], start=q.start, follow=q.follow)
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
    closing = request.app[_STATE].closing
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


@route(query=WaitRunQuery, responses={200: RunChanged}, errors_on=(404,), tags=_TAGS)
async def wait_for_run(request: web.Request) -> web.Response:
    """Answer once the run's ``last_seq`` exceeds ``after_seq`` (or at ``timeout``)."""
    run_id = request.match_info["run_id"]
    q = _query(request, WaitRunQuery)
    world = _world(request)
    now = (await world.get_run(run_id)).last_seq  # an unknown run is a plain 404 at once
    last_seq = await _until_closing(
        request, world.wait_for_run(run_id, after_seq=q.after_seq, timeout=_cap(q.timeout)), now
    )
    return _json(RunChanged(last_seq=last_seq))


@route(query=WaitWorldQuery, responses={200: WorldChanged}, tags=_TAGS)
async def wait_for_world(request: web.Request) -> web.Response:
    """Answer once the world's change counter exceeds ``after`` (or at ``timeout``)."""
    q = _query(request, WaitWorldQuery)
    world = _world(request)
    epoch = request.app[_STATE].epoch
    now = await world.wait_for_world(after=0, timeout=0)
    if q.epoch is not None and q.epoch != epoch:
        return _json(WorldChanged(changes=now, epoch=epoch))  # counted since a restart
    changes = await _until_closing(
        request, world.wait_for_world(after=q.after, timeout=_cap(q.timeout)), now
    )
    return _json(WorldChanged(changes=changes, epoch=epoch))


# -- catalog ---------------------------------------------------------------------------------


@route(body=WorkflowList, responses={204: None}, tags=_TAGS)
async def publish_workflows(request: web.Request) -> web.Response:
    """Store catalog entries, each replacing the stored entry of its name."""
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        await world.publish_workflows(decode(body, WorkflowList).workflows)
        return 204, b""

    return _respond(await _idempotent(request, compute))


@route(responses={200: WorkflowList}, tags=_TAGS)
async def list_workflows(request: web.Request) -> web.Response:
    """Every published entry, with the live engines serving each."""
    return _json(WorkflowList(workflows=await _world(request).list_workflows()))


@route(responses={200: WorkflowInfo}, errors_on=(404,), tags=_TAGS)
async def get_workflow(request: web.Request) -> web.Response:
    """One published entry."""
    return _json(await _world(request).get_workflow(request.match_info["name"]))


# -- ownership -------------------------------------------------------------------------------


@route(body=RegisterBody, responses={200: EngineInfo}, tags=_TAGS)
async def register_engine(request: web.Request) -> web.Response:
    """Register a new engine (a fresh id), live for ``ttl`` seconds."""
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, RegisterBody)
        return 200, encode(await world.register_engine(workflows=b.workflows, ttl=b.ttl))

    return _respond(await _idempotent(request, compute))


@route(responses={200: EngineList}, tags=_TAGS)
async def list_engines(request: web.Request) -> web.Response:
    """The live engines, oldest registration first."""
    return _json(EngineList(engines=await _world(request).list_engines()))


@route(responses={200: EngineInfo}, errors_on=(409,), tags=_TAGS)
async def heartbeat(request: web.Request) -> web.Response:
    """Keep an engine live for another ``ttl`` seconds."""
    engine_id = request.match_info["engine_id"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        return 200, encode(await world.heartbeat(engine_id))

    return _respond(await _idempotent(request, compute))


@route(responses={200: Released}, tags=_TAGS)
async def deregister_engine(request: web.Request) -> web.Response:
    """A clean exit: release the engine's runs and forget it."""
    engine_id = request.match_info["engine_id"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        return 200, encode(Released(count=await world.deregister_engine(engine_id)))

    return _respond(await _idempotent(request, compute))


@route(body=ClaimBody, responses={200: RunList}, errors_on=(409,), tags=_TAGS)
async def claim_orphans(request: web.Request) -> web.Response:
    """Take up to ``limit`` orphaned runs of ``workflows`` for the engine."""
    engine_id = request.match_info["engine_id"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, ClaimBody)
        runs = await world.claim_orphans(engine_id, workflows=b.workflows, limit=b.limit)
        return 200, encode(RunList(runs=runs))

    return _respond(await _idempotent(request, compute))


@route(body=ReleaseBody, responses={200: Released}, tags=_TAGS)
async def release_runs(request: web.Request) -> web.Response:
    """Release those of ``run_ids`` the engine owns."""
    engine_id = request.match_info["engine_id"]
    world = _world(request)

    async def compute(body: bytes) -> Answer:
        count = await world.release_runs(engine_id, decode(body, ReleaseBody).run_ids)
        return 200, encode(Released(count=count))

    return _respond(await _idempotent(request, compute))


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
    ("POST", "/workflows", publish_workflows),
    ("GET", "/workflows", list_workflows),
    ("GET", "/workflows/{name}", get_workflow),
    ("POST", "/engines", register_engine),
    ("GET", "/engines", list_engines),
    ("POST", "/engines/{engine_id}/heartbeat", heartbeat),
    ("DELETE", "/engines/{engine_id}", deregister_engine),
    ("POST", "/engines/{engine_id}/claims", claim_orphans),
    ("POST", "/engines/{engine_id}/releases", release_runs),
)


async def _on_shutdown(app: web.Application) -> None:
    app[_STATE].closing.set()


def add_routes(app: web.Application) -> None:
    """Mount the World API under ``/_world/v1`` on ``app``, serving its control plane's
    world (``app[CONTROL].world``)."""
    app[_STATE] = _State()
    app.on_shutdown.append(_on_shutdown)
    for method, path, handler in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
