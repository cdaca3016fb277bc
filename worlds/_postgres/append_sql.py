"""The one SQL statement of an append (see :mod:`~worldflow.worlds._postgres.appender`).

A compare-and-set of the run row (an ``UPDATE ... WHERE last_seq = $expected``, or an
``INSERT ... ON CONFLICT DO NOTHING`` for a wave that creates the run) in a CTE, and every
other write (events, steps, hooks, waits, the change counter, a NOTIFY) conditional on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worldflow.worlds._events import AnyEvent, encode_event
from worldflow.worlds._postgres import codec
from worldflow.worlds._records import Hook, Step, Wait, WorkflowRun

__all__ = ["build_append_sql", "created_args", "rows_args"]


def created_args(run: WorkflowRun) -> list[Any]:
    """``$2`` to ``$13`` of a statement that creates the run."""
    return [
        run.workflow_name,
        run.status.value,
        run.last_seq,
        run.resource_id,
        codec.encode(run.metadata).decode(),
        run.parent_run_id,
        run.created_at,
        bytes(run.input),
        codec.encode_run(run),
        run.owner_id,
        run.owner_epoch,
        run.forked_from,
    ]


def rows_args(
    events: Sequence[AnyEvent],
    steps: Mapping[str, Step],
    hooks: Mapping[str, Hook],
    waits: Mapping[str, Wait],
) -> list[Any]:
    """The arrays the ``ev`` / ``st`` / ``hk`` / ``wt`` CTEs unnest (only those present)."""
    args: list[Any] = [
        [e.seq for e in events],
        [e.event_id for e in events],
        [e.type for e in events],
        [e.correlation_id for e in events],
        [encode_event(e) for e in events],
    ]
    if steps:
        s = list(steps.values())
        args += [[x.step_id for x in s], [x.status.value for x in s], [codec.encode(x) for x in s]]
    if hooks:
        h = list(hooks.values())
        args += [[x.hook_id for x in h], [x.token for x in h]]
        args += [[x.status.value for x in h], [codec.encode(x) for x in h]]
    if waits:
        w = list(waits.values())
        args += [[x.wait_id for x in w], [x.status.value for x in w]]
        args += [[x.resume_at for x in w], [codec.encode(x) for x in w]]
    return args


def build_append_sql(
    s: str,
    created: bool,
    fenced: bool,
    claims: bool,
    steps: bool,
    hooks: bool,
    waits: bool,
    notify: bool,
) -> str:
    """The one statement of an append: a CAS on the run row, then every write depends on it.

    ``fenced``: the run must still have the owner the rules saw; ``claims``: the batch takes
    the run for an engine, which must be live (by the database's clock).
    """
    live = (
        f"EXISTS (SELECT 1 FROM {s}.engines"
        " WHERE engine_id = ${} AND expires_at > clock_timestamp())"
    )
    if created:
        head = f"""cas AS (
            INSERT INTO {s}.runs (run_id, workflow_name, status, last_seq, resource_id,
                metadata, parent_run_id, created_at, input, view, owner_id, owner_epoch,
                forked_from)
            SELECT $1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11::text, $12, $13
            WHERE $11::text IS NULL OR {live.format(11)}
            ON CONFLICT (run_id) DO NOTHING RETURNING pos, owner_id, owner_epoch)"""
        n = 14
    else:
        sets = "last_seq = $4, status = $5, view = $6"
        where = "run_id = $1 AND pos = $2 AND last_seq = $3"
        n = 7
        if fenced:
            where += f" AND owner_id IS NOT DISTINCT FROM ${n}::text AND owner_epoch = ${n + 1}"
            n += 2
        if claims:
            sets += f", owner_id = ${n}, owner_epoch = ${n + 1}"
            where += f" AND {live.format(n)}"
            n += 2
        head = f"""cas AS (
            UPDATE {s}.runs SET {sets} WHERE {where} RETURNING pos, owner_id, owner_epoch)"""
    parts = [head]
    parts.append(f"""ev AS (
        INSERT INTO {s}.events (run_id, seq, event_id, type, correlation_id, body)
        SELECT $1, u.seq, u.eid, u.typ, u.cid, u.body
        FROM unnest(${n}::bigint[], ${n + 1}::text[], ${n + 2}::text[], ${n + 3}::text[],
                    ${n + 4}::bytea[]) AS u(seq, eid, typ, cid, body)
        WHERE EXISTS (SELECT 1 FROM cas))""")
    n += 5
    if steps:
        parts.append(f"""st AS (
            INSERT INTO {s}.steps (run_id, step_id, status, view)
            SELECT $1, u.id, u.status, u.view
            FROM unnest(${n}::text[], ${n + 1}::text[], ${n + 2}::bytea[]) AS u(id, status, view)
            WHERE EXISTS (SELECT 1 FROM cas)
            ON CONFLICT (run_id, step_id)
            DO UPDATE SET status = excluded.status, view = excluded.view)""")
        n += 3
    if hooks:
        parts.append(f"""hk AS (
            INSERT INTO {s}.hooks (run_id, hook_id, token, status, view)
            SELECT $1, u.id, u.token, u.status, u.view
            FROM unnest(${n}::text[], ${n + 1}::text[], ${n + 2}::text[], ${n + 3}::bytea[])
                AS u(id, token, status, view)
            WHERE EXISTS (SELECT 1 FROM cas)
            ON CONFLICT (run_id, hook_id)
            DO UPDATE SET status = excluded.status, view = excluded.view)""")
        n += 4
    if waits:
        parts.append(f"""wt AS (
            INSERT INTO {s}.waits (run_id, wait_id, status, resume_at, view)
            SELECT $1, u.id, u.status, u.resume_at, u.view
            FROM unnest(${n}::text[], ${n + 1}::text[], ${n + 2}::timestamptz[],
                        ${n + 3}::bytea[]) AS u(id, status, resume_at, view)
            WHERE EXISTS (SELECT 1 FROM cas)
            ON CONFLICT (run_id, wait_id)
            DO UPDATE SET status = excluded.status, resume_at = excluded.resume_at,
                view = excluded.view)""")
        n += 4
    select = f"""SELECT (SELECT pos FROM cas) AS pos, (SELECT owner_id FROM cas) AS owner_id,
        (SELECT owner_epoch FROM cas) AS owner_epoch,
        CASE WHEN EXISTS (SELECT 1 FROM cas) THEN nextval('{s}.changes') END AS change"""
    if notify:
        select += f""",
        (SELECT pg_notify(${n}, ${n + 1}) FROM cas) AS notified"""
    return "WITH " + ",\n".join(parts) + "\n" + select
