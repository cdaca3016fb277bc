"""A scratch PostgreSQL database for the test session, and a fresh schema per world.

The server is ``WORLDFLOW_TEST_POSTGRES_URL`` (an admin URL; default
``postgresql://postgres@127.0.0.1:5432/postgres``, the local trust-auth server). The first
world a test process opens creates ``worldflow_test_<time>_<pid>_<hex>``; the session drops it
at the end (``pytest_sessionfinish`` in ``tests/conftest.py``), and drops databases left
behind by crashed sessions more than a day old. Each world gets its own schema
(``t_<hex>``), dropped when the world closes.

Without a reachable server the PostgreSQL tests **fail**, naming the variable: they are part
of ``make test``. Set ``WORLDFLOW_SKIP_POSTGRES=1`` to skip them on a machine without one.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from worldflow.worlds._postgres import PostgresWorld

ADMIN_ENV: Final = "WORLDFLOW_TEST_POSTGRES_URL"
SKIP_ENV: Final = "WORLDFLOW_SKIP_POSTGRES"
DEFAULT_ADMIN_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
SKIP: Final = os.environ.get(SKIP_ENV, "") not in ("", "0")
SKIP_REASON: Final = f"PostgreSQL tests skipped: {SKIP_ENV} is set"
_PREFIX: Final = "worldflow_test_"
_STALE_AFTER: Final = 86400

_database: str | None = None


def admin_url() -> str:
    """The server's admin URL."""
    return os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN_URL


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))


async def _admin() -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(admin_url(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"the PostgreSQL tests need a server: {admin_url()} did not answer ({exc!r}). "
            f"Start one (see .ci/run), point {ADMIN_ENV} at one, or set {SKIP_ENV}=1 to skip "
            "these tests"
        ) from exc


async def database_url() -> str:
    """The URL of this process's scratch database (created on first use)."""
    global _database
    if _database is None:
        name = f"{_PREFIX}{int(time.time())}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        conn = await _admin()
        try:
            await _drop_stale(conn)
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        _database = name
    return _with_database(admin_url(), _database)


async def _drop_stale(conn: Any) -> None:
    rows = await conn.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1", _PREFIX.replace("_", r"\_") + "%"
    )
    now = time.time()
    for row in rows:
        parts = row["datname"][len(_PREFIX) :].split("_")
        if parts and parts[0].isdigit() and now - int(parts[0]) > _STALE_AFTER:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')


async def drop_database() -> None:
    """Drop this process's scratch database, if it made one."""
    global _database
    if _database is None:
        return
    name, _database = _database, None
    conn = await _admin()
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A world URL with a schema of its own, dropped on exit."""
    import asyncpg

    url = await database_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{url}?schema={schema}"
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


@asynccontextmanager
async def two_worlds(url: str) -> AsyncIterator[tuple[PostgresWorld, PostgresWorld]]:
    """Two PostgreSQL worlds on one schema (standing in for two processes), closed after."""
    from worldflow.worlds import open_world
    from worldflow.worlds._postgres import PostgresWorld

    a = await open_world(url)
    b = await open_world(url)
    assert isinstance(a, PostgresWorld)
    assert isinstance(b, PostgresWorld)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()
