"""The PostgreSQL world's tables, and the versioned migrations that create them.

Everything lives in one schema (``worldflow`` unless the URL says ``?schema=``). A table
``meta`` records the schema version; :func:`migrate` brings a schema of any older version (or
none) up to :data:`SCHEMA_VERSION` under a session advisory lock, so engines that start at
the same moment do not race: the first creates, the others wait and find it done.

Payloads (inputs, outputs, hook payloads, stream chunks) and the views are stored as
``bytea`` (never ``jsonb``, which would reorder keys and drop whitespace): a payload comes
back byte for byte. Columns beside a view exist only for filters and indexes.
"""

from __future__ import annotations

import re
from typing import Any, Final

from worldflow.errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "check_schema_name", "migrate"]

_SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

# Each migration is a list of statements run in one transaction; ``{s}`` is the schema.
_MIGRATIONS: Final[list[list[str]]] = [
    # 1: the event log, the views, the queue and the streams.
    [
        """CREATE TABLE {s}.runs (
            run_id text PRIMARY KEY,
            pos bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            created_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            workflow_name text NOT NULL,
            status text NOT NULL,
            last_seq bigint NOT NULL,
            resource_id text,
            metadata jsonb NOT NULL,
            parent_run_id text,
            created_at timestamptz NOT NULL,
            input bytea NOT NULL,
            view bytea NOT NULL
        ) WITH (fillfactor = 80)""",
        "CREATE INDEX ON {s}.runs (workflow_name, pos)",
        "CREATE INDEX ON {s}.runs (pos) WHERE status IN ('pending', 'running', 'suspended')",
        "CREATE INDEX ON {s}.runs (resource_id, pos) WHERE resource_id IS NOT NULL",
        "CREATE INDEX ON {s}.runs USING gin (metadata jsonb_path_ops)",
        "CREATE INDEX ON {s}.runs (created_at)",
        "CREATE INDEX ON {s}.runs (created_xid)",
        "CREATE INDEX ON {s}.runs (parent_run_id) WHERE parent_run_id IS NOT NULL",
        """CREATE TABLE {s}.events (
            run_id text NOT NULL,
            seq bigint NOT NULL,
            event_id text NOT NULL,
            type text NOT NULL,
            correlation_id text,
            body bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        # The database's backstop for "a second *_created is a conflict".
        """CREATE UNIQUE INDEX events_claims ON {s}.events (
            run_id, correlation_id,
            (CASE WHEN type = 'hook_conflict' THEN 'hook_created' ELSE type END)
        ) WHERE type IN ('step_created', 'wait_created', 'hook_created', 'hook_conflict')""",
        """CREATE TABLE {s}.steps (
            run_id text NOT NULL,
            step_id text NOT NULL,
            pos bigint GENERATED ALWAYS AS IDENTITY,
            status text NOT NULL,
            view bytea NOT NULL,
            PRIMARY KEY (run_id, step_id)
        ) WITH (fillfactor = 80)""",
        "CREATE INDEX ON {s}.steps (run_id, pos)",
        """CREATE TABLE {s}.hooks (
            run_id text NOT NULL,
            hook_id text NOT NULL,
            pos bigint GENERATED ALWAYS AS IDENTITY,
            created_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            token text NOT NULL,
            status text NOT NULL,
            view bytea NOT NULL,
            PRIMARY KEY (run_id, hook_id)
        )""",
        "CREATE INDEX ON {s}.hooks (run_id, pos)",
        "CREATE INDEX ON {s}.hooks (pos)",
        "CREATE INDEX ON {s}.hooks (created_xid)",
        # A live token belongs to one hook, across every run and every process.
        "CREATE UNIQUE INDEX hooks_live_token ON {s}.hooks (token) WHERE status = 'active'",
        """CREATE TABLE {s}.waits (
            run_id text NOT NULL,
            wait_id text NOT NULL,
            pos bigint GENERATED ALWAYS AS IDENTITY,
            created_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            status text NOT NULL,
            resume_at timestamptz,
            view bytea NOT NULL,
            PRIMARY KEY (run_id, wait_id)
        )""",
        "CREATE INDEX ON {s}.waits (run_id, pos)",
        "CREATE INDEX ON {s}.waits (pos)",
        "CREATE INDEX ON {s}.waits (created_xid)",
        """CREATE INDEX ON {s}.waits (resume_at)
            WHERE status = 'waiting' AND resume_at IS NOT NULL""",
        """CREATE TABLE {s}.queue (
            message_id text PRIMARY KEY,
            queue text NOT NULL,
            pos bigint GENERATED ALWAYS AS IDENTITY,
            run_id text NOT NULL,
            message bytea NOT NULL,
            available_at timestamptz NOT NULL,
            attempt integer NOT NULL DEFAULT 0,
            lease_id text,
            idempotency_key text
        ) WITH (fillfactor = 70)""",
        "CREATE INDEX ON {s}.queue (queue, available_at, pos)",
        """CREATE UNIQUE INDEX queue_idempotency ON {s}.queue (queue, idempotency_key)
            WHERE idempotency_key IS NOT NULL""",
        "CREATE INDEX ON {s}.queue (run_id)",
        """CREATE TABLE {s}.streams (
            run_id text NOT NULL,
            name text NOT NULL,
            pos bigint GENERATED ALWAYS AS IDENTITY,
            length bigint NOT NULL,
            closed boolean NOT NULL DEFAULT false,
            PRIMARY KEY (run_id, name)
        )""",
        """CREATE TABLE {s}.stream_chunks (
            run_id text NOT NULL,
            name text NOT NULL,
            idx bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (run_id, name, idx)
        )""",
        "CREATE SEQUENCE {s}.changes",
    ],
    # 2: engines (liveness by heartbeat), run owners, the catalog, addressed queue messages.
    [
        """CREATE TABLE {s}.engines (
            engine_id text PRIMARY KEY,
            pos bigint GENERATED ALWAYS AS IDENTITY,
            workflows text[] NOT NULL,
            ttl float8 NOT NULL,
            registered_at timestamptz NOT NULL,
            heartbeat_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            host text,
            pid integer
        )""",
        "ALTER TABLE {s}.runs ADD COLUMN owner_id text, ADD COLUMN owner_epoch bigint NOT NULL "
        "DEFAULT 0",
        """CREATE INDEX runs_owner ON {s}.runs (owner_id, pos)
            WHERE status IN ('pending', 'running', 'suspended')""",
        "ALTER TABLE {s}.queue ADD COLUMN workflow_name text, ADD COLUMN engine_id text",
        "CREATE TABLE {s}.workflows (name text PRIMARY KEY, entry bytea NOT NULL)",
    ],
    # 3: fork lineage (list_runs(forked_from=...)).
    [
        "ALTER TABLE {s}.runs ADD COLUMN forked_from text",
        "CREATE INDEX ON {s}.runs (forked_from, pos) WHERE forked_from IS NOT NULL",
    ],
    # 4: flow-control permits (granted, or a place in line), see ``permits``.
    [
        """CREATE TABLE {s}.permits (
            key text NOT NULL,
            holder text NOT NULL,
            run_id text NOT NULL,
            engine_id text NOT NULL,
            granted boolean NOT NULL,
            priority integer NOT NULL,
            since timestamptz NOT NULL,
            asked_at timestamptz NOT NULL,
            expires_at timestamptz,
            PRIMARY KEY (key, holder)
        )""",
    ],
]

SCHEMA_VERSION: Final = len(_MIGRATIONS)
"""The version :func:`migrate` brings a schema to."""


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lower-case identifier (it is spliced into SQL), else raise."""
    if not _SCHEMA_NAME.match(name):
        raise ConfigurationError(
            f"invalid schema name {name!r} in the postgresql:// URL: use lower-case letters, "
            "digits and underscores (at most 48, not starting with a digit)"
        )
    return name


async def migrate(conn: Any, schema: str) -> int:
    """Create or upgrade ``schema`` to :data:`SCHEMA_VERSION`; return the version found.

    Takes a session advisory lock keyed on the schema name for the whole upgrade, so
    concurrent callers serialize; each migration commits with its version bump.

    Raises:
        ConfigurationError: the schema was made by a newer worldflow.
    """
    s = check_schema_name(schema)
    key = f"worldflow:{s}"
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 7007))", key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        found = await conn.fetchval(f"SELECT value FROM {s}.meta WHERE key = 'schema_version'")
        version = int(found) if found is not None else 0
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"schema {s!r} is at version {version}, newer than this worldflow knows "
                f"({SCHEMA_VERSION}): upgrade worldflow on this machine"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            script = [statement.format(s=s) for statement in _MIGRATIONS[number - 1]]
            script.append(
                f"INSERT INTO {s}.meta (key, value) VALUES ('schema_version', '{number}') "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
            async with conn.transaction():  # one round trip: a script of simple statements
                await conn.execute(";\n".join(script))
        return version
    finally:
        await conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 7007))", f"worldflow:{s}"
        )
