"""The ``file://`` URL of a file world: its directory and options."""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from worldflow.errors import ConfigurationError

__all__ = ["parse_file_url"]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def parse_file_url(url: str) -> tuple[str, bool, bool]:
    """The directory, ``fsync`` and ``read_only`` a ``file://`` URL names (see
    :meth:`FileWorld.from_url`); a malformed URL or an unknown option raises
    :class:`~worldflow.ConfigurationError` saying what to write instead."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise ConfigurationError(f"{url!r} is not a file:// URL")
    host = "" if parts.netloc in ("", "localhost") else parts.netloc
    path = unquote(host + parts.path)
    if not path:
        raise ConfigurationError(
            f"{url!r} names no directory; write file://./.worldflow (relative) or "
            "file:///var/lib/worldflow (absolute)"
        )
    options = {"fsync": True, "read_only": False}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in options:
            raise ConfigurationError(
                f"unknown option {key!r} in {url!r}; the file world takes fsync= and read_only="
            )
        options[key] = _parse_bool(key, value, url)
    return path, bool(options["fsync"]), bool(options["read_only"])


def _parse_bool(key: str, value: str, url: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"option {key}={value!r} in {url!r} must be 1 or 0 (true/false)")
