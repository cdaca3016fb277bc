"""A small, framework-free HTTP request/response model for webhooks.

A webhook is a hook whose payload is an HTTP request: ``create_webhook(respond_with=...)``
inside a workflow, ``Engine.resume_webhook(token, request)`` outside (the inspector's webhook
route builds the :class:`WebhookRequest` from its aiohttp request and sends back the
:class:`WebhookResponse`). Both are msgspec Structs, so the request travels through the log
as an ordinary payload and comes back out of ``await hook`` as a :class:`WebhookRequest`.

What the sender gets back is fixed when the webhook is created: the ``respond_with`` response,
or ``202 Accepted`` with an empty body. The hook's stored metadata carries it, in the shape
made by :func:`webhook_metadata` and read by :func:`response_for`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from worldflow import _serde
from worldflow.errors import SerializationError

__all__ = [
    "DEFAULT_WEBHOOK_RESPONSE",
    "WebhookRequest",
    "WebhookResponse",
    "response_for",
    "user_metadata",
    "webhook_metadata",
]


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP request delivered to a webhook.

    Attributes:
        method: The HTTP method, upper case (``"POST"``).
        path: The request path (``"/webhooks/abc"``), without the query string.
        query: The query string parameters (the last value wins for a repeated name).
        headers: The request headers; names are kept as sent.
        body: The raw request body.
    """

    method: str = "POST"
    path: str = "/"
    query: dict[str, str] = msgspec.field(default_factory=dict)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b""

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


def webhook_metadata(respond_with: WebhookResponse | None, metadata: Any = None) -> Any:
    """The value to store as a webhook's hook metadata (encode it with ``_serde.encode``).

    It keeps the fixed response next to the user's own metadata, so the runtime can answer
    the sender without asking the workflow.
    """
    if respond_with is not None and not isinstance(respond_with, WebhookResponse):
        raise TypeError(
            f"respond_with must be a WebhookResponse, not {type(respond_with).__name__}; "
            "e.g. respond_with=WebhookResponse(status=200, body=b'ok')"
        )
    return {_RESPOND_WITH: respond_with, _METADATA: metadata}


def _decoded(metadata: msgspec.Raw) -> Any:
    try:
        return _serde.decode(metadata)
    except SerializationError:
        return None


def response_for(metadata: msgspec.Raw) -> WebhookResponse:
    """The response a webhook with this stored metadata sends back to its caller."""
    value = _decoded(metadata)
    if isinstance(value, dict):
        response = value.get(_RESPOND_WITH)
        if isinstance(response, WebhookResponse):
            return response
    return DEFAULT_WEBHOOK_RESPONSE


def user_metadata(metadata: msgspec.Raw, *, is_webhook: bool) -> Any:
    """The metadata the workflow passed when it created the hook or webhook, decoded."""
    value = _decoded(metadata)
    if is_webhook and isinstance(value, dict) and _RESPOND_WITH in value:
        return value.get(_METADATA)
    return value
