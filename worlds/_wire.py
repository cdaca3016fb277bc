"""The World API on the wire: the routes of ``/_world/v1`` and the bodies they carry.

Shared by the client (:class:`~worldflow.worlds._remote.RemoteWorld`) and the server
(``worldflow.inspector.api.world``); it imports no HTTP library. Bodies are JSON made by
msgspec from the same records and events every world returns, so a value crosses the wire
unchanged (payloads stay byte for byte, chunks travel as base64).

The API mirrors the World protocol, one resource per role, with world-vercel's resource
names where they fit (``POST /runs/{run_id}/events``, ``GET /hooks/by-token?token=``,
``GET /runs/{run_id}/streams/{name}/chunks?start=``)::

    POST   /runs/{run_id}/events                append a batch        -> EventResult
    GET    /runs/{run_id}/events?after_seq=     list events           -> Page[event]
    GET    /runs                                list runs             -> Page[WorkflowRun]
    GET    /runs/{run_id}                       get a run             -> WorkflowRun
    DELETE /runs/{run_id}                       purge                 -> 204
    GET    /runs/{run_id}/steps[/{step_id}]     steps                 -> Page[Step] | Step
    GET    /hooks/by-token?token=               the live hook         -> Hook
    GET    /hooks, /waits                       listings              -> Page[Hook] | Page[Wait]
    POST   /queues/{queue}/messages             enqueue               -> Enqueued
    POST   /queues/{queue}/leases               lease (long-poll)     -> Leases
    POST   /queues/{queue}/leases/{id}/ack|nack|extend               -> 204 | Lease
    POST   /runs/{run_id}/streams/{name}/chunks write chunks          -> StreamLength
    POST   /runs/{run_id}/streams/{name}/close  close                 -> 204
    GET    /runs/{run_id}/streams/{name}/chunks read (NDJSON, live)   -> StreamFrame lines
    GET    /runs/{run_id}/streams               list streams          -> StreamList
    GET    /runs/{run_id}/wait?after_seq=       run grew (long-poll)  -> RunChanged
    GET    /wait?after=                         world changed (l.-p.) -> WorldChanged
    POST   /workflows                           publish entries       -> 204
    GET    /workflows[/{name}]                  catalog               -> WorkflowList | entry
    POST   /engines                             register an engine    -> EngineInfo
    GET    /engines                             live engines          -> EngineList
    POST   /engines/{engine_id}/heartbeat       keep it live          -> EngineInfo
    DELETE /engines/{engine_id}                 clean exit            -> Released
    POST   /engines/{engine_id}/claims          take orphaned runs    -> RunList
    POST   /engines/{engine_id}/releases        give runs back        -> Released

Every ``POST`` and ``DELETE`` carries an ``Idempotency-Key`` header: the server remembers
each key's answer for a while (:data:`IDEMPOTENCY_TTL`), so a retry after a lost response
gets the first answer instead of doing the write twice. Errors are ``{"code", "message"}``
with the ``worldflow.errors`` code, so they come out of the client as the class they were.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

import msgspec

from worldflow.errors import InvalidEventError
from worldflow.worlds._events import AnyEvent
from worldflow.worlds._records import (
    EngineInfo,
    Fence,
    HookStatus,
    Lease,
    Permit,
    QueueMessage,
    RunStatus,
    StreamInfo,
    WaitStatus,
    WorkflowInfo,
    WorkflowRun,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "IDEMPOTENCY_TTL",
    "LONG_POLL_MAX",
    "PREFIX",
    "AckBody",
    "AppendBody",
    "ClaimBody",
    "EngineList",
    "EnqueueBody",
    "Enqueued",
    "ErrorBody",
    "ExtendBody",
    "HookByTokenQuery",
    "LeaseBody",
    "Leases",
    "ListEventsQuery",
    "ListHooksQuery",
    "ListRunsQuery",
    "ListWaitsQuery",
    "NackBody",
    "PageQuery",
    "PermitAskBody",
    "PermitList",
    "PermitReleaseBody",
    "PermitReleased",
    "PermitsQuery",
    "RawAppendBody",
    "ReadStreamQuery",
    "Refused",
    "RegisterBody",
    "ReleaseBody",
    "Released",
    "RunChanged",
    "RunList",
    "StreamFrame",
    "StreamLength",
    "StreamList",
    "StreamWriteBody",
    "WaitRunQuery",
    "WaitWorldQuery",
    "WorkflowList",
    "WorldChanged",
    "convert_query",
    "decode",
    "encode",
    "refused",
]

PREFIX: Final = "/_world/v1"
"""The versioned path prefix of the World API (a breaking change gets ``/_world/v2``)."""

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
"""The header that names a write, so a retried one is answered from memory."""

IDEMPOTENCY_TTL: Final = 600.0
"""Seconds the server remembers a key's answer (the client stops retrying well before)."""

LONG_POLL_MAX: Final = 5.0
"""The longest a long-poll request waits on the server; longer waits are several requests.
Kept well under the 10 s read timeout common HTTP clients, fuzzers and proxies use, so a
long-poll is never what makes a client (or a proxy) give up on a live connection; an idle
engine pays one request per waiter every 5 s."""

T = TypeVar("T")


# -- request bodies --------------------------------------------------------------------------


MAX_SECONDS: Final = 366 * 24 * 3600.0
"""The longest duration (seconds) any World API field takes: a year and a day."""

Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
"""A duration in seconds, 0 to :data:`MAX_SECONDS` (outside: 400, not an overflow)."""

Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
"""A counter or sequence number: 0 to 2**53 (what JSON numbers carry exactly)."""

Limit = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
"""How many items at most one call returns."""


class AppendBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /runs/{run_id}/events``: the batch to append atomically, and who appends it
    (the engine's fence; see ``Ownership``)."""

    events: list[AnyEvent]
    fence: Fence | None = None
    expected_seq: Count | None = None


class RawAppendBody(msgspec.Struct, frozen=True, kw_only=True):
    """An append's batch with its events still encoded (to find the first bad one)."""

    events: list[msgspec.Raw]
    fence: Fence | None = None
    expected_seq: Count | None = None


class EnqueueBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /queues/{queue}/messages``. ``idempotency_key`` is the queue's own key (one
    waiting message per key), not the request's ``Idempotency-Key``."""

    message: QueueMessage
    idempotency_key: str | None = None
    delay: Seconds = 0.0


class LeaseBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /queues/{queue}/leases``: waits up to ``wait`` seconds (capped at
    :data:`LONG_POLL_MAX`) for a due message."""

    lease_for: Seconds
    max_messages: Limit = 1
    wait: Seconds = 0.0
    workflows: list[str] | None = None
    engine_id: str | None = None


class NackBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /queues/{queue}/leases/{lease_id}/nack``."""

    lease: Lease
    delay: Seconds = 0.0


class ExtendBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /queues/{queue}/leases/{lease_id}/extend``."""

    lease: Lease
    lease_for: Seconds


class AckBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /queues/{queue}/leases/{lease_id}/ack``."""

    lease: Lease


class StreamWriteBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /runs/{run_id}/streams/{name}/chunks``: chunks as base64 strings."""

    chunks: list[bytes]


class WorkflowList(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /workflows`` (publish) and ``GET /workflows``: catalog entries."""

    workflows: list[WorkflowInfo]


class RegisterBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /engines``: a new engine serving ``workflows``, live for ``ttl`` seconds."""

    workflows: list[str]
    ttl: Seconds


class ClaimBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /engines/{engine_id}/claims``: take up to ``limit`` orphaned runs."""

    workflows: list[str]
    limit: Limit


class ReleaseBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /engines/{engine_id}/releases``: give these runs back."""

    run_ids: list[str]


class PermitAskBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /permits``: ask for a permit on ``key`` for ``holder`` (``FlowControl``)."""

    key: str
    holder: str
    run_id: str
    engine_id: str
    limit: int
    period: float | None = None
    priority: int = 0


class PermitReleaseBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /permits/release``: give back ``holder``'s permit on ``key`` (or leave its line)."""

    key: str
    holder: str


# -- query strings ---------------------------------------------------------------------------


class ListEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /runs/{run_id}/events``."""

    after_seq: Count = 0
    limit: Limit | None = None


class ListRunsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /runs``. ``status`` may repeat; ``metadata`` is a JSON object of wanted pairs."""

    workflow_name: str | None = None
    status: list[RunStatus] | None = None
    resource_id: str | None = None
    metadata: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    order: str = "desc"
    limit: Limit = 100
    cursor: str | None = None
    forked_from: str | None = None


class PermitsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /permits``: the permits and the line on ``key``."""

    key: str


class PageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /runs/{run_id}/steps``."""

    limit: Limit = 1000
    cursor: str | None = None


class ListHooksQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /hooks``."""

    run_id: str | None = None
    status: HookStatus | None = None
    limit: Limit = 1000
    cursor: str | None = None


class ListWaitsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /waits``."""

    run_id: str | None = None
    status: WaitStatus | None = None
    limit: Limit = 1000
    cursor: str | None = None


class HookByTokenQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /hooks/by-token``."""

    token: str


class ReadStreamQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /runs/{run_id}/streams/{name}/chunks``."""

    start: int = 0
    follow: bool = True


class WaitRunQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /runs/{run_id}/wait``: answers once ``last_seq > after_seq`` or at ``timeout``."""

    after_seq: Count
    timeout: Seconds = LONG_POLL_MAX
    terminal: bool = False
    """Answer only once the run is terminal (``wait_for_run(terminal=True)``)."""


class WaitWorldQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /wait``: answers once the change counter exceeds ``after`` or at ``timeout``."""

    after: Count
    timeout: Seconds = LONG_POLL_MAX
    epoch: str | None = None
    """The server epoch the caller's ``after`` counts in: another one answers at once."""


# -- responses -------------------------------------------------------------------------------


class Enqueued(msgspec.Struct, frozen=True, kw_only=True):
    """The enqueued (or already waiting) message's id."""

    message_id: str


class Leases(msgspec.Struct, frozen=True, kw_only=True):
    """The leases taken (empty when ``wait`` passed with nothing due)."""

    leases: list[Lease]


class StreamLength(msgspec.Struct, frozen=True, kw_only=True):
    """The stream's length after the write."""

    length: int


class StreamList(msgspec.Struct, frozen=True, kw_only=True):
    """A run's streams."""

    streams: list[StreamInfo]


class RunChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The run's ``last_seq`` when the wait ended; for a ``terminal`` wait, also whether the
    run had ended then (otherwise the wait timed out)."""

    last_seq: int
    terminal: bool = False


class WorldChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The world's change counter when the wait ended, and the server's ``epoch`` (a new one
    after every restart: the counter of a restarted server starts again)."""

    changes: int
    epoch: str


class EngineList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /engines``: the live engines."""

    engines: list[EngineInfo]


class RunList(msgspec.Struct, frozen=True, kw_only=True):
    """The runs an engine claimed."""

    runs: list[WorkflowRun]


class Released(msgspec.Struct, frozen=True, kw_only=True):
    """How many runs a release (or a deregistration) handed back."""

    count: int


class PermitReleased(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a permit release removed anything."""

    removed: bool


class PermitList(msgspec.Struct, frozen=True, kw_only=True):
    """The permits that count on a key, then its line."""

    permits: list[Permit]


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every error answer: the ``worldflow.errors`` code and a message for a person."""

    code: str
    message: str
    field: str | None = None
    details: dict[str, str | int | float | bool | None] | None = None
    errorId: str | None = None  # the wire name, as on the app's other JSON routes


class StreamFrame(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a stream read (NDJSON): a chunk, a heartbeat, the end, or an error.

    A read that ends without an ``end`` (or ``error``) line was cut: read again from the next
    index.
    """

    index: int | None = None
    data: bytes | None = None
    end: bool = False
    heartbeat: bool = False
    error: ErrorBody | None = None


# -- coding ----------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def encode(value: object) -> bytes:
    """The JSON body of ``value``."""
    return _encoder.encode(value)


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode a JSON body as ``type_``; a malformed one raises ``InvalidEventError`` naming
    the field (``$.events[0].correlation_id``)."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        value: T = decoder.decode(data)
        return value
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEventError(f"malformed JSON body: {exc}") from None


NOT_AN_EVENT: Final = "not_an_event"
"""The ``type`` of the marker the client sends in place of an event its validation refused."""


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=NOT_AN_EVENT):
    """In an append's batch: an event (or a value that is no event) the client checked with
    the shared validation and found bad, with that check's message. The hosted world refuses
    the batch at its place, so an earlier event's own error still comes first."""

    message: str


def refused(error: InvalidEventError) -> bytes:
    """The JSON of a :class:`Refused` marker for ``error``."""
    return encode(Refused(message=error.message))


def convert_query(query: dict[str, Any], type_: type[T]) -> T:
    """A query string (values as strings, lists for repeated keys) as the Struct ``type_``."""
    try:
        return msgspec.convert(query, type_, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"invalid query: {exc}") from None
