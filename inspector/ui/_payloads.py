"""Payloads shown to people: pretty JSON as escaped, highlighted HTML, with size caps.

A payload is JSON text the engine recorded. It is read here as plain JSON (never through the
engine's serializer, which imports the classes a payload names): the inspector shows data, it
does not run it. Every string goes through :func:`markupsafe.escape`, so a payload holding
``<script>`` shows as that text.

Above :data:`INLINE_LIMIT` bytes a payload is not rendered: the page shows its size, the first
:data:`PREVIEW_BYTES` of its text and a download link.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from markupsafe import Markup, escape

__all__ = [
    "ARRAY_ITEMS",
    "INLINE_LIMIT",
    "PREVIEW_BYTES",
    "Shown",
    "format_size",
    "show_payload",
    "summary",
]

INLINE_LIMIT = 64 * 1024
PREVIEW_BYTES = 4 * 1024
ARRAY_ITEMS = 100
"""Items of a list or keys of an object shown before "… N more"."""


class Shown(msgspec.Struct, frozen=True, kw_only=True):
    """A payload ready for a page: highlighted HTML, or a preview when it is too big."""

    size: int
    html: Markup | None
    preview: str | None
    is_null: bool
    invalid: bool = False


def format_size(size: int) -> str:
    """``512 B``, ``1.5 KB``, ``5.0 MB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def show_payload(
    raw: bytes | msgspec.Raw | None, *, limit: int = INLINE_LIMIT, highlight: bool = True
) -> Shown:
    """Prepare ``raw`` JSON for a page (see the module docstring).

    ``highlight=False`` indents without colouring (much cheaper: the event log's rows).
    """
    data = b"null" if raw is None else bytes(raw)
    size = len(data)
    if size > limit:
        preview = data[:PREVIEW_BYTES].decode("utf-8", errors="replace")
        return Shown(size=size, html=None, preview=preview, is_null=False)
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        text = data.decode("utf-8", errors="replace")
        return Shown(size=size, html=Markup("%s") % text, preview=None, is_null=False, invalid=True)
    if not highlight:
        text = json.dumps(value, indent=2, ensure_ascii=False)
        return Shown(size=size, html=escape(text), preview=None, is_null=value is None)
    out: list[str] = []
    _emit(value, out, 0)
    return Shown(size=size, html=Markup("".join(out)), preview=None, is_null=value is None)


def _span(cls: str, text: str) -> str:
    return f'<span class="j-{cls}">{escape(text)}</span>'


def _emit(value: Any, out: list[str], depth: int) -> None:
    pad = "  " * (depth + 1)
    end_pad = "  " * depth
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{\n")
        items = list(value.items())
        for i, (key, item) in enumerate(items[:ARRAY_ITEMS]):
            out.append(pad + _span("k", json.dumps(key, ensure_ascii=False)) + ": ")
            _emit(item, out, depth + 1)
            out.append(",\n" if i < min(len(items), ARRAY_ITEMS) - 1 else "\n")
        if len(items) > ARRAY_ITEMS:
            out.append(pad + _span("more", f"… {len(items) - ARRAY_ITEMS} more keys") + "\n")
        out.append(end_pad + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[]")
            return
        out.append("[\n")
        shown = value[:ARRAY_ITEMS]
        for i, item in enumerate(shown):
            out.append(pad)
            _emit(item, out, depth + 1)
            out.append(",\n" if i < len(shown) - 1 else "\n")
        if len(value) > ARRAY_ITEMS:
            out.append(pad + _span("more", f"… {len(value) - ARRAY_ITEMS} more items") + "\n")
        out.append(end_pad + "]")
    elif isinstance(value, str):
        out.append(_span("s", json.dumps(value, ensure_ascii=False)))
    elif isinstance(value, bool) or value is None:
        out.append(_span("b", json.dumps(value)))
    elif isinstance(value, float) and not math.isfinite(value):
        out.append(_span("n", str(value)))
    else:
        out.append(_span("n", json.dumps(value)))


def summary(raw: bytes | msgspec.Raw | None, *, width: int = 80) -> str:
    """One line of a payload for a table cell (plain text; the template escapes it)."""
    data = b"null" if raw is None else bytes(raw)
    text = data[: width * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
