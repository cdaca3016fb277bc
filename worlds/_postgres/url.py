"""The ``postgresql://`` URL of a world: worldflow's own options, and the rest for libpq."""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from worldflow.errors import ConfigurationError
from worldflow.worlds._postgres.schema import check_schema_name

__all__ = ["application_name", "parse_url"]

_OWN_OPTIONS: Final = frozenset({"schema", "pool_min", "pool_max", "maintain_every"})


def parse_url(url: str) -> tuple[str, str, int, int, float]:
    """``(dsn, schema, pool_min, pool_max, maintain_every)`` from a ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a postgresql:// URL: {url!r}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = check_schema_name(options.get("schema", "worldflow"))
    try:
        pool_min = int(options.get("pool_min", "2"))
        pool_max = int(options.get("pool_max", "10"))
        maintain_every = float(options.get("maintain_every", "60"))
    except ValueError:
        raise ConfigurationError(
            f"invalid option in {url!r}: pool_min and pool_max are integers, maintain_every "
            "a number of seconds"
        ) from None
    if not maintain_every >= 0:
        raise ConfigurationError(f"invalid maintain_every in {url!r}: seconds, 0 for never")
    if not 0 <= pool_min <= pool_max or pool_max < 1:
        raise ConfigurationError(
            f"invalid pool sizes in {url!r}: need 0 <= pool_min <= pool_max and pool_max >= 1"
        )
    rest = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in _OWN_OPTIONS])
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    return dsn, schema, pool_min, pool_max, maintain_every


def application_name(schema: str) -> str:
    """Every connection's (other processes' sessions with it are peers that may listen)."""
    return f"worldflow:{schema}"
