"""``open_world(url)``: build a world from a URL (or ``WORLDFLOW_WORLD``)."""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from worldflow.errors import ConfigurationError, WorldNotAvailableError

if TYPE_CHECKING:
    from worldflow.worlds._protocol import World

__all__ = ["DEFAULT_WORLD_URL", "open_world"]

DEFAULT_WORLD_URL = "file://./.worldflow"
"""The embedded default: a directory of JSONL logs next to the service."""

# scheme -> (module, factory, pip extra that provides its driver)
_WORLDS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("worldflow.worlds._memory.world", "MemoryWorld.from_url", None),
    "file": ("worldflow.worlds._file.world", "FileWorld.from_url", None),
    "http": ("worldflow.worlds._remote", "RemoteWorld.from_url", "remote"),
    "https": ("worldflow.worlds._remote", "RemoteWorld.from_url", "remote"),
    "postgresql": ("worldflow.worlds._postgres", "PostgresWorld.from_url", "postgres"),
    "postgres": ("worldflow.worlds._postgres", "PostgresWorld.from_url", "postgres"),
}
_TOKEN_SCHEMES = frozenset({"http", "https"})


async def open_world(url: str | None = None, *, token: str | None = None) -> World:
    """Open the world at ``url``: ``memory://``, ``file://PATH``, ``http(s)://HOST:PORT``,
    ``postgresql://...``.

    Without ``url``, ``WORLDFLOW_WORLD`` from the environment is used, else
    :data:`DEFAULT_WORLD_URL`. ``token`` is the bearer token of a remote world's server
    (default: ``WORLDFLOW_TOKEN`` from the environment).

    >>> world = await open_world("memory://")  # doctest: +SKIP
    >>> world = await open_world("http://127.0.0.1:8642", token="s3cret")  # doctest: +SKIP
    """
    url = url or os.environ.get("WORLDFLOW_WORLD") or DEFAULT_WORLD_URL
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _WORLDS:
        known = ", ".join(f"{s}://" for s in _WORLDS)
        raise ConfigurationError(f"unknown world URL {url!r}: the scheme must be one of {known}")
    module_name, factory_path, extra = _WORLDS[scheme]
    if token is not None and scheme not in _TOKEN_SCHEMES:
        raise ConfigurationError(f"token= is for http(s):// worlds, not {scheme}://")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise WorldNotAvailableError(
                f"the {scheme}:// world is not implemented in this version of worldflow"
            ) from None
        hint = f"pip install 'worldflow[{extra}]'" if extra else "pip install worldflow"
        raise WorldNotAvailableError(
            f"the {scheme}:// world needs the package {exc.name!r}, which is not installed; "
            f"run: {hint}"
        ) from None
    cls_name, method = factory_path.split(".")
    factory = getattr(getattr(module, cls_name), method)
    if scheme in _TOKEN_SCHEMES:
        return cast("World", await factory(url, token=token))
    return cast("World", await factory(url))
