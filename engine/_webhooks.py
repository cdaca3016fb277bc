"""A small, framework-free HTTP request/response model for webhooks.

A webhook is a hook whose payload is an HTTP request: ``create_webhook(respond_with=...)``
inside a workflow, ``Engine.resume_webhook(token, request)`` outside (the inspector's webhook
route builds the :class:`WebhookRequest` from its aiohttp request and sends back the
:class:`WebhookResponse`). Both are msgspec Structs, so the request travels through the log
as an ordinary payload and comes back out of ``await hook`` as a :class:`WebhookRequest`.

What the sender gets back is chosen when the webhook is created: the ``respond_with``
response, ``202 Accepted`` with an empty body by default, or, with ``respond_with="manual"``,
whatever a step of the run sends with ``await request.respond_with(WebhookResponse(...))``
(the caller waits for it, up to a timeout). The hook's stored metadata carries the choice, in
a :class:`WebhookSpec` made by :func:`webhook_metadata` and read by :func:`response_for` /
:func:`is_manual`.

A manual answer travels through the world, so it works when the HTTP server and the engine
running the step are different processes: the request names a stream of the run
(``reply_to``), the step writes the response there, and :func:`wait_for_reply` reads it.

``webhook.url`` is built from the base URL the HTTP app was given (``create_app(base_url=)``,
``worldflow serve``), else ``$WORLDFLOW_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import msgspec

from worldflow import _serde
from worldflow.errors import (
    ConfigurationError,
    SerializationError,
    StreamNotFoundError,
    WebhookNotAnsweredError,
    WebhookTimeoutError,
)

if TYPE_CHECKING:
    from worldflow.worlds import World

__all__ = [
    "DEFAULT_WEBHOOK_RESPONSE",
    "DEFAULT_WEBHOOK_TIMEOUT",
    "WEBHOOK_PATH",
    "WebhookRequest",
    "WebhookResponse",
    "is_manual",
    "response_for",
    "set_base_url",
    "user_metadata",
    "wait_for_reply",
    "webhook_metadata",
    "webhook_url",
]

WEBHOOK_PATH = "/.well-known/workflow/v1/webhook/"
"""Where the HTTP app serves webhooks; the token follows (percent-encoded)."""

DEFAULT_WEBHOOK_TIMEOUT = 30.0
"""Seconds a manual webhook's caller waits for the run's answer by default."""

_base_url: str | None = None


def set_base_url(url: str | None) -> None:
    """Set the URL the HTTP app is reachable at (``webhook.url`` is built from it).

    Process-wide: the HTTP app calls it with its ``base_url``; ``None`` clears it.
    """
    global _base_url
    _base_url = url.rstrip("/") if url else None


def webhook_url(token: str) -> str:
    """The public URL of the webhook holding ``token``."""
    base = _base_url or os.environ.get("WORLDFLOW_BASE_URL", "").rstrip("/")
    if not base:
        raise ConfigurationError(
            "webhook.url needs the server's public URL: serve with `worldflow serve` (or "
            "create_app(..., base_url=...)) in this process, or set WORLDFLOW_BASE_URL"
        )
    return base + WEBHOOK_PATH + quote(token, safe="")


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP request delivered to a webhook.

    Attributes:
        method: The HTTP method, upper case (``"POST"``).
        path: The request path (``"/webhooks/abc"``), without the query string.
        query: The query string parameters (the last value wins for a repeated name).
        headers: The request headers; names are kept as sent.
        body: The raw request body.
        reply_to: For a ``respond_with="manual"`` webhook, the run's stream that
            :meth:`respond_with` writes the answer to (set by the runtime).
    """

    method: str = "POST"
    path: str = "/"
    query: dict[str, str] = msgspec.field(default_factory=dict)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b""
    reply_to: str | None = None

    async def respond_with(self, response: WebhookResponse) -> None:
        """Answer the HTTP caller of a ``respond_with="manual"`` webhook. Call it in a step.

        ::

            @step
            async def answer(request: WebhookRequest) -> None:
                await request.respond_with(WebhookResponse.json({"ok": True}))

        Only the first answer reaches the caller; the caller gets 504 if none comes in time.
        """
        from worldflow._replay.current import in_workflow
        from worldflow._runtime.step_info import StreamWriter, get_writable

        if not isinstance(response, WebhookResponse):
            raise TypeError(f"respond_with() takes a WebhookResponse, not {response!r}")
        if self.reply_to is None:
            raise RuntimeError(
                "this request cannot be answered: its webhook was not created with "
                'create_webhook(respond_with="manual")'
            )
        if in_workflow():
            raise RuntimeError(
                "request.respond_with() does I/O: call it in a step (pass the request to a "
                "@step function), not in the workflow body"
            )
        writer = get_writable(self.reply_to)
        assert isinstance(writer, StreamWriter)
        await writer.write(response)
        await writer.close()

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name``, looked up case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text."""
        return self.body.decode(encoding)

    def json(self) -> Any:
        """The body parsed as JSON (:class:`msgspec.DecodeError` if it is not JSON)."""
        return msgspec.json.decode(self.body)


class WebhookResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The HTTP response a webhook sends back to its caller.

    Attributes:
        status: The HTTP status code (default ``202 Accepted``).
        headers: Response headers.
        body: The response body.
    """

    status: int = 202
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, value: Any, *, status: int = 200) -> WebhookResponse:
        """A JSON response: ``WebhookResponse.json({"ok": True})``."""
        return cls(
            status=status,
            headers={"Content-Type": "application/json"},
            body=msgspec.json.encode(value),
        )


DEFAULT_WEBHOOK_RESPONSE = WebhookResponse()
"""What a webhook created without ``respond_with`` answers: ``202 Accepted``, empty body."""

_RESPOND_WITH = "respond_with"
_METADATA = "metadata"
_MANUAL = "manual"


class WebhookSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook's stored hook metadata: how its caller is answered, and the user's metadata.

    The engine stores it as the ``hook_created`` event's ``metadata`` payload (a tagged
    Struct, so it comes back as itself). Logs written before it existed hold the same two
    keys in a plain dict; :func:`webhook_spec` reads both.

    Attributes:
        respond_with: The fixed answer, ``"manual"`` (a step answers), or ``None`` for the
            default ``202 Accepted``.
        metadata: The metadata the workflow passed to ``create_webhook``.
    """

    respond_with: WebhookResponse | Literal["manual"] | None = None
    metadata: Any = None


def webhook_metadata(
    respond_with: WebhookResponse | Literal["manual"] | None, metadata: Any = None
) -> WebhookSpec:
    """The value to store as a webhook's hook metadata (encode it with ``_serde.encode``).

    It keeps the fixed response (or ``"manual"``) next to the user's own metadata, so the
    runtime can answer the sender without asking the workflow.
    """
    if respond_with is not None and not (
        isinstance(respond_with, WebhookResponse) or respond_with == _MANUAL
    ):
        raise TypeError(
            f'respond_with must be a WebhookResponse or "manual", not {respond_with!r}; '
            "e.g. respond_with=WebhookResponse(status=200, body=b'ok')"
        )
    return WebhookSpec(respond_with=respond_with, metadata=metadata)


def _decoded(metadata: msgspec.Raw) -> Any:
    try:
        return _serde.decode(metadata)
    except SerializationError:
        return None


def webhook_spec(metadata: msgspec.Raw) -> WebhookSpec | None:
    """The :class:`WebhookSpec` in a webhook's stored metadata, in either stored shape;
    ``None`` when the metadata holds neither (not a webhook's)."""
    value = _decoded(metadata)
    if isinstance(value, WebhookSpec):
        return value
    if isinstance(value, dict) and _RESPOND_WITH in value:  # written before WebhookSpec
        answer = value[_RESPOND_WITH]
        if not (isinstance(answer, WebhookResponse) or answer == _MANUAL):
            answer = None
        return WebhookSpec(respond_with=answer, metadata=value.get(_METADATA))
    return None


def response_for(metadata: msgspec.Raw) -> WebhookResponse:
    """The response a webhook with this stored metadata sends back to its caller."""
    spec = webhook_spec(metadata)
    if spec is not None and isinstance(spec.respond_with, WebhookResponse):
        return spec.respond_with
    return DEFAULT_WEBHOOK_RESPONSE


def is_manual(metadata: msgspec.Raw) -> bool:
    """Whether a webhook with this stored metadata is answered by a step of its run."""
    spec = webhook_spec(metadata)
    return spec is not None and spec.respond_with == _MANUAL


async def wait_for_reply(
    world: World, run_id: str, reply_to: str, *, timeout: float
) -> WebhookResponse:
    """The answer a step writes to the run's stream ``reply_to`` (:meth:`respond_with`).

    Raises :class:`~worldflow.WebhookTimeoutError` (HTTP 504) after ``timeout`` seconds, and
    :class:`~worldflow.WebhookNotAnsweredError` (HTTP 502) as soon as the run ends without
    answering: the caller never hangs.
    """
    try:
        async with asyncio.timeout(timeout):
            async for chunk in world.read_stream(run_id, reply_to, follow=True):
                value = _serde.decode(chunk.data)
                if isinstance(value, WebhookResponse):
                    return value
                break
    except TimeoutError:
        raise WebhookTimeoutError(
            f"run {run_id} did not answer its manual webhook within {timeout:g}s: a step "
            "must call `await request.respond_with(WebhookResponse(...))`"
        ) from None
    except StreamNotFoundError:
        pass
    raise WebhookNotAnsweredError(
        f"run {run_id} ended without answering its manual webhook (no step called "
        "request.respond_with())"
    )


def user_metadata(metadata: msgspec.Raw, *, is_webhook: bool) -> Any:
    """The metadata the workflow passed when it created the hook or webhook, decoded."""
    if is_webhook:
        spec = webhook_spec(metadata)
        if spec is not None:
            return spec.metadata
    return _decoded(metadata)
