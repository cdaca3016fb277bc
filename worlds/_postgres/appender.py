"""``append`` on PostgreSQL: the shared rules in Python, then one compare-and-set statement.

Each world instance caches an overlay of the runs it writes (a :class:`RunState`). An append
applies its batch to it with the rules every world shares (:class:`~worldflow.worlds._rules.Batch`
through a :class:`StoredRun` view), then writes everything in **one** autocommit
statement whose data-modifying CTEs all depend on a compare-and-set of the run row: the
``UPDATE runs ... WHERE run_id = $1 AND pos = $2 AND last_seq = $expected`` (or, for a batch
that creates the run, ``INSERT ... ON CONFLICT DO NOTHING``). If another process appended
meanwhile, the CAS matches nothing, nothing is written, and the batch is re-applied to a
fresh read of the run: the rules then give the right answer (``EntityConflictError`` for a
step result that lost the race), or the retry succeeds. ``seq`` is dense because of the CAS;
``PRIMARY KEY (run_id, seq)`` backs it up, and the database itself enforces that a live
token belongs to one hook (a partial unique index) and that a ``*_created`` happens once.

Appends to one run from this process are coalesced: while its statement is in flight, later
batches queue up for the next one (each still checked on its own, each caller gets its own
result or error), so a fan-in of hundreds of step results is a handful of statements.

A statement whose outcome is unknown (the connection died before its reply) is resolved by
reading the event id at the first ``seq`` it wrote: the world mints event ids before writing,
so it recognises its own append and never writes it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import msgspec

from worldflow.errors import (
    EntityConflictError,
    InvalidEventError,
    RunNotFoundError,
    WorldflowError,
)
from worldflow.worlds._clock import Clock
from worldflow.worlds._events import (
    RUN_TERMINAL_EVENT_TYPES,
    AnyEvent,
    HookCreated,
    RunCreated,
)
from worldflow.worlds._fencing import check_expected_seq, check_fence
from worldflow.worlds._ids import id_problem
from worldflow.worlds._memory.log import LogState, RunState, StoredRun, commit
from worldflow.worlds._postgres import codec
from worldflow.worlds._postgres.append_sql import build_append_sql, created_args, rows_args
from worldflow.worlds._postgres.children import CHILDREN_SQL, read_children
from worldflow.worlds._postgres.notify import CONNECTION_ERRORS, MAX_PAYLOAD, Notifier
from worldflow.worlds._protocol import OWNER_ONLY_EVENTS, EventResult
from worldflow.worlds._records import (
    TERMINAL_RUN_STATUSES,
    Fence,
    Hook,
    HookStatus,
    Step,
    Wait,
    WaitStatus,
    WorkflowRun,
)
from worldflow.worlds._rules import Batch
from worldflow.worlds._validation import validate_event

__all__ = ["AppendStats", "Appender"]

log = logging.getLogger("worldflow.worlds.postgres")

# Events that another process may be waiting for at once: a terminal event (Run.result in
# another process) or an external input (the owner must drive the run). These notify in
# the append statement itself; everything else is announced by the coalescing notifier.
_URGENT_TYPES: Final = RUN_TERMINAL_EVENT_TYPES | {
    "hook_received",
    "event_raised",
    "run_resumed",
    "step_resumed",
}
_MAX_ATTEMPTS: Final = 64
_CACHE_SIZE: Final = 4096


@dataclass(slots=True)
class AppendStats:
    """Counters of the write path (read by tests and benchmarks)."""

    batches: int = 0
    statements: int = 0
    cas_misses: int = 0
    reloads: int = 0
    token_reads: int = 0  # reads of who holds the tokens of new hooks
    child_reads: int = 0  # reads of the children a child_ended reports on (not cached)
    unknown_outcomes: int = 0


@dataclass(slots=True, eq=False)
class _Pending:
    events: Sequence[AnyEvent]
    fence: Fence | None
    future: asyncio.Future[EventResult]
    expected_seq: int | None = None


@dataclass(slots=True, eq=False)
class _Cached:
    state: RunState  # changed in place by the run's writer before its statement commits
    pos: int
    last_seq: int  # as committed
    ended: bool = False  # whether the run was terminal as committed (an end is final)


@dataclass(slots=True, eq=False)
class _Wave:
    """The batches of one statement, applied to the overlay, and what they write."""

    start_seq: int
    created: bool  # the wave creates the run (INSERT instead of the CAS UPDATE)
    results: list[tuple[_Pending, EventResult | WorldflowError]] = field(default_factory=list)
    events: list[AnyEvent] = field(default_factory=list)
    steps: dict[str, Step] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    waits: dict[str, Wait] = field(default_factory=dict)
    urgent: bool = False
    became_terminal: bool = False
    notified: bool = False  # the statement sent the news itself (a NOTIFY in it)
    # Ownership: the owner the overlay had before the wave, whether the database must still
    # have it (the wave holds owner-only events), and the owner a claim gives the run.
    owner: tuple[str | None, int] = (None, 0)
    fenced: bool = False
    claim: tuple[str, int] | None = None


class _Retry(Exception):
    """The wave must be re-applied to a fresh read of the run."""


FaultHook = Callable[[str, Any], Awaitable[None]]
"""A test hook called as ``hook(point, connection)`` at ``"before"`` / ``"after"`` the write."""


class Appender:
    """The append path of one :class:`~worldflow.worlds._postgres.world.PostgresWorld`.

    Args:
        pool: The world's connection pool.
        schema: The (checked) schema name.
        clock: Where view timestamps come from.
        on_commit: Called with ``(run_id, last_seq, notified, became_terminal)`` after each
            committed statement, to wake local waiters and feed the notifier (what the
            statement did not send itself).
        log_channel: The NOTIFY channel that announces log growth.
        notifier: The coalescing notifier, whose pending items ride along with a statement
            that notifies anyway.
    """

    def __init__(
        self,
        pool: Any,
        schema: str,
        clock: Clock,
        on_commit: Callable[[str, int, bool, bool], None],
        log_channel: str,
        notifier: Notifier,
    ) -> None:
        self._pool = pool
        self._s = schema
        self._clock = clock
        self._on_commit = on_commit
        self._channel = log_channel
        self._notifier = notifier
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._pending: dict[str, list[_Pending]] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._writing: set[str] = set()  # runs with a statement being prepared or in flight
        self._deferred: dict[str, int] = {}  # news heard while writing: run -> last_seq
        self._deferred_ends: set[str] = set()  # ends heard while writing
        self.on_news: Callable[[str], None] = _ignore
        self.on_end: Callable[[str], None] = _ignore
        self._sql_cache: dict[tuple[bool, ...], str] = {}
        self.stats = AppendStats()
        self.fault: FaultHook | None = None
        s = schema
        self._load_sql = f"""
            SELECT 0 AS kind, pos, view, input, NULL::text AS cid, owner_id, owner_epoch
                FROM {s}.runs WHERE run_id = $1
            UNION ALL SELECT 1, pos, view, NULL, NULL, NULL, 0 FROM {s}.steps WHERE run_id = $1
            UNION ALL SELECT 2, pos, view, NULL, NULL, NULL, 0 FROM {s}.hooks WHERE run_id = $1
            UNION ALL SELECT 3, pos, view, NULL, NULL, NULL, 0 FROM {s}.waits WHERE run_id = $1
            UNION ALL SELECT 4, seq, NULL, NULL, correlation_id, NULL, 0 FROM {s}.events
                WHERE run_id = $1 AND type = 'hook_conflict'
            ORDER BY kind, pos"""
        self._live_sql = (
            f"SELECT engine_id FROM {s}.engines "
            "WHERE engine_id = ANY($1::text[]) AND expires_at > clock_timestamp()"
        )
        self._holders_sql = (
            f"SELECT token, run_id, hook_id FROM {s}.hooks "
            "WHERE token = ANY($1::text[]) AND status = 'active'"
        )
        self._children_sql = CHILDREN_SQL.format(s=s)
        self._probe_sql = f"""
            SELECT e.event_id, r.pos, r.owner_id, r.owner_epoch
            FROM {s}.events e JOIN {s}.runs r USING (run_id)
            WHERE e.run_id = $1 AND e.seq = $2"""

    # -- cache -----------------------------------------------------------------------------

    def evict(self, run_id: str | None = None) -> None:
        """Forget the cached overlay of ``run_id`` (of every run with ``None``)."""
        if run_id is None:
            self._cache.clear()
        else:
            self._cache.pop(run_id, None)

    def heard(self, run_id: str, last_seq: int) -> bool:
        """A notification said the run's log reached ``last_seq`` (0: purged): drop the
        cached overlay if that is news, so nothing trusts a cache another process outran.

        Returns whether local waiters should be woken now. Not for an echo of this process's
        own commit (the cache holds only its own commits, whose waiters were woken then),
        nor while this process is writing the run: the notification may be the echo of the
        statement in flight, whose reply has not been read yet. That news is decided when
        the write ends (``on_news`` is called if the write did not reach it).
        """
        cached = self._cache.get(run_id)
        if last_seq > 0:
            if cached is not None and last_seq <= cached.last_seq:
                return False
            if run_id in self._writing:
                self._deferred[run_id] = max(last_seq, self._deferred.get(run_id, 0))
                return False
        if cached is not None:
            del self._cache[run_id]
        return True

    def heard_end(self, run_id: str) -> bool:
        """A notification said the run ended: whether to wake its result waiters now.

        Not while this process is writing the run: it is most likely the echo of the
        statement in flight, whose commit wakes them with the end already cached (no read).
        ``on_end`` is called once the write is over, in case it was another's end.
        """
        if run_id in self._writing:
            self._deferred_ends.add(run_id)
            return False
        return True

    def cached_last_seq(self, run_id: str) -> int:
        """The ``last_seq`` this process last wrote or read for the run (0 if unknown).

        Never ahead of the database: it only grows with committed statements.
        """
        cached = self._cache.get(run_id)
        return cached.last_seq if cached is not None else 0

    def cached_unfinished(self, run_id: str) -> bool:
        """Whether the run was not terminal at ``cached_last_seq`` (as this process
        committed or read it): the stored run has not ended unless its log grew since.

        Decided on what committed, not on the overlay, which a statement in flight may have
        taken to the end already (the waiter then waits for that commit's signal).
        """
        cached = self._cache.get(run_id)
        return cached is not None and not cached.ended

    def cached_end(self, run_id: str) -> int:
        """The ``last_seq`` of a run this process committed or read as ended (0 if not so
        known). An end is final, so no read is needed to know it, even while a later
        statement (a late step result) is in flight."""
        cached = self._cache.get(run_id)
        return cached.last_seq if cached is not None and cached.ended else 0

    async def _load(self, conn: Any, run_id: str) -> _Cached | None:
        self.stats.reloads += 1
        rows = await conn.fetch(self._load_sql, run_id)
        if not rows or rows[0]["kind"] != 0:
            return None
        head = rows[0]
        run = codec.decode_run(head)
        state = RunState(run=run, index=0)
        for row in rows[1:]:
            kind = row["kind"]
            if kind == 1:
                step = codec.decode_step(row["view"])
                state.steps[step.step_id] = step
                state.step_order.append(step.step_id)
            elif kind == 2:
                hook = codec.decode_hook(row["view"])
                state.hooks[hook.hook_id] = hook
                state.hook_order.append(hook.hook_id)
                state.claimed_hook_ids.add(hook.hook_id)
                if hook.status is HookStatus.ACTIVE:
                    state.live_hooks.add(hook.hook_id)
            elif kind == 3:
                wait = codec.decode_wait(row["view"])
                state.waits[wait.wait_id] = wait
                state.wait_order.append(wait.wait_id)
                if wait.status is WaitStatus.WAITING:
                    state.waiting.add(wait.wait_id)
            else:
                state.claimed_hook_ids.add(row["cid"])
        ended = run.status in TERMINAL_RUN_STATUSES
        return _Cached(state=state, pos=head["pos"], last_seq=run.last_seq, ended=ended)

    def _ended_run(self, run_id: str) -> WorkflowRun | None:
        """The view of a run this process committed or read as ended (an end is final)."""
        cached = self._cache.get(run_id)
        return cached.state.run if cached is not None and cached.ended else None

    def _remember(self, run_id: str, cached: _Cached) -> None:
        cache = self._cache
        cache[run_id] = cached
        cache.move_to_end(run_id)
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)

    # -- append ----------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        """Queue the batch behind the run's in-flight statement (if any) and await its result."""
        future: asyncio.Future[EventResult] = asyncio.get_running_loop().create_future()
        pending = self._pending.get(run_id)
        self.stats.batches += 1
        if pending is None:
            self._pending[run_id] = [_Pending(events, fence, future, expected_seq)]
            task = asyncio.ensure_future(self._drain(run_id))
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        else:
            pending.append(_Pending(events, fence, future, expected_seq))
        return await future

    async def aclose(self) -> None:
        """Wait for the statements in flight (their callers get their results)."""
        if self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)

    async def _drain(self, run_id: str) -> None:
        """Write the run's queued batches, a wave per statement, until none are left."""
        queued = self._pending[run_id]
        try:
            while queued:
                wave = queued[:]
                queued.clear()
                try:
                    await self._write(run_id, wave)
                except BaseException as exc:
                    for item in wave:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            del self._pending[run_id]
            for item in queued:  # only when cancelled mid-way
                if not item.future.done():
                    item.future.set_exception(EntityConflictError("the world was closed"))

    async def _write(self, run_id: str, items: list[_Pending]) -> None:
        self._writing.add(run_id)
        try:
            await self._write_wave(run_id, items)
        finally:
            self._writing.discard(run_id)
            heard = self._deferred.pop(run_id, 0)
            if heard > self.cached_last_seq(run_id):  # another process's news after all
                self.evict(run_id)
                self.on_news(run_id)
            if run_id in self._deferred_ends:
                self._deferred_ends.discard(run_id)
                self.on_end(run_id)

    async def _write_wave(self, run_id: str, items: list[_Pending]) -> None:
        cached = self._cache.get(run_id)
        for attempt in range(_MAX_ATTEMPTS):
            fresh = cached is None
            # A wave that starts by creating the run needs no read first: the INSERT finds out
            # if the run exists (then the wave is re-applied to a read of it).
            creates = attempt == 0 and cached is None and _creates_run(items)
            if creates:
                fresh = False
            async with self._pool.acquire() as conn:
                if cached is None and not creates:
                    cached = await self._load(conn, run_id)
                try:
                    # After a miss, ask the database which fencing engines are live and who
                    # holds the new hooks' tokens; the first attempt assumes the engines
                    # live and the tokens free (the statement checks both anyway).
                    wave, new = await self._apply(
                        conn, run_id, cached, items, fresh, attempt > 0, assumed_new=creates
                    )
                except _Retry:
                    self.evict(run_id)
                    cached = None
                    continue
                if new is None or (not wave.events and wave.claim is None):
                    self._settle(wave)  # nothing to store: the answers stand
                    return
                try:
                    row = await self._statement(conn, run_id, cached, new, wave)
                except asyncpg.exceptions.UniqueViolationError:
                    row = None  # a token or a *_created claimed elsewhere since our read
                except CONNECTION_ERRORS:
                    self.stats.unknown_outcomes += 1
                    with contextlib.suppress(Exception):  # may be detached already
                        conn.terminate()  # the pool replaces it
                    row = _LOST
            if row is _LOST:  # the reply was lost: did the statement commit?
                self.evict(run_id)
                row = await self._probe(run_id, wave)
            if row is None:
                self.stats.cas_misses += 1
                self.evict(run_id)
                cached = None
                continue
            pos, owner_id, owner_epoch = row
            if (owner_id, owner_epoch) != (new.run.owner_id, new.run.owner_epoch):
                # Not fenced, and another engine took the run meanwhile: show the real owner.
                new.run = _replace(new.run, owner_id=owner_id, owner_epoch=owner_epoch)
                wave.results = [
                    (item, _with_owner(out, owner_id, owner_epoch)) for item, out in wave.results
                ]
            ended = new.run.status in TERMINAL_RUN_STATUSES
            last_seq = new.run.last_seq
            self._remember(run_id, _Cached(state=new, pos=pos, last_seq=last_seq, ended=ended))
            self._settle(wave)
            self._on_commit(run_id, new.run.last_seq, wave.notified, wave.became_terminal)
            return
        raise EntityConflictError(
            f"run {run_id!r} is appended to by other processes too fast: "
            f"gave up after {_MAX_ATTEMPTS} attempts"
        )

    def _settle(self, wave: _Wave) -> None:
        for item, outcome in wave.results:
            if item.future.done():
                continue
            if isinstance(outcome, EventResult):
                item.future.set_result(outcome)
            else:
                item.future.set_exception(outcome)

    async def _apply(
        self,
        conn: Any,
        run_id: str,
        cached: _Cached | None,
        items: list[_Pending],
        fresh: bool,
        check_live: bool,
        *,
        assumed_new: bool = False,
    ) -> tuple[_Wave, RunState | None]:
        """Apply every batch of the wave to the overlay; return the wave and the new state.

        ``assumed_new``: the wave starts with ``run_created`` and was applied without reading
        whether the run exists. Any refusal then is decided again on a read: which rule
        refuses a batch first (an existing run's ``run_created`` is a conflict before a bad
        event later in the batch is invalid) depends on the run's state.
        """
        base = cached.state if cached is not None else None
        start_seq = base.run.last_seq if base is not None else 0
        wave = _Wave(start_seq=start_seq, created=base is None)
        if base is not None:
            wave.owner = (base.run.owner_id, base.run.owner_epoch)
        # The cached state is changed in place (one writer per run at a time); a failed
        # statement evicts it.
        work = base
        logstate = LogState()
        if work is not None:
            logstate.runs[run_id] = work
        tokens: list[str] = []
        for item in items:
            for ev in item.events:
                if not isinstance(ev, HookCreated):
                    continue
                try:  # only valid tokens go to the database; the rules refuse the rest in order
                    validate_event(ev, run_id)
                except InvalidEventError:
                    continue
                tokens.append(ev.token)
        if tokens and check_live:
            self.stats.token_reads += 1
            for row in await conn.fetch(self._holders_sql, tokens):
                logstate.tokens[row["token"]] = (row["run_id"], row["hook_id"])
        elif tokens and base is not None:
            # First attempt: a new token is assumed free unless this run holds it (almost
            # always so). If another run holds it, the hooks' live-token index refuses the
            # statement and the retry reads the holders.
            for hook_id in base.live_hooks:
                hook = base.hooks[hook_id]
                logstate.tokens[hook.token] = (run_id, hook_id)
        events = (ev for item in items for ev in item.events)
        if await read_children(conn, self._children_sql, events, self._ended_run, logstate):
            self.stats.child_reads += 1
        assumed_free = bool(tokens) and not check_live
        live: Callable[[str], bool] = _always
        if check_live:
            fences = list({item.fence.engine_id for item in items if item.fence is not None})
            if fences:
                found = {row["engine_id"] for row in await conn.fetch(self._live_sql, fences)}
                live = found.__contains__
        now = self._clock.now()
        owner_only = OWNER_ONLY_EVENTS
        for item in items:
            stamped = item.expected_seq is not None
            batch = Batch(StoredRun(logstate, run_id), run_id, now, stamped=stamped)
            before = batch.run
            was_terminal = before is not None and before.status in TERMINAL_RUN_STATUSES
            fence = item.fence
            fenced = fence is not None or (before is not None and before.owner_id is not None)
            try:
                claim = None
                if stamped:  # the fence, then the precondition, before any other rule
                    if fenced:
                        claim = check_fence(before, item.events, fence, live)
                    check_expected_seq(run_id, before, item.expected_seq)
                for event in item.events:
                    batch.add(event)
                if batch.run is None:
                    raise RunNotFoundError(f"no run {run_id!r} in this world")
                if fenced and not stamped:
                    claim = check_fence(before, item.events, fence, live)
            except WorldflowError as exc:
                # (A run id that breaks the id rule names no stored run: nothing to read.)
                recheck = assumed_new and id_problem(run_id) is None
                if recheck or (not fresh and not isinstance(exc, InvalidEventError)):
                    raise _Retry from None  # the cache may be behind: decide on a fresh read
                wave.results.append((item, exc))
                continue
            state = commit(logstate, batch)
            state.events.clear()  # bodies are in the database, not cached
            if claim is not None:
                state.run = _replace(state.run, owner_id=claim[0], owner_epoch=claim[1])
                wave.claim = claim
            if not wave.fenced and any(type(ev) in owner_only for ev in item.events):
                wave.fenced = True
            work = state
            wave.events.extend(batch.events)
            wave.steps.update(batch.steps)
            wave.hooks.update(batch.hooks)
            wave.waits.update(batch.waits)
            if any(ev.type in _URGENT_TYPES for ev in batch.events):
                wave.urgent = True
            if not was_terminal and state.run.status in TERMINAL_RUN_STATUSES:
                wave.became_terminal = True
            wave.results.append(
                (
                    item,
                    EventResult(
                        run=state.run,
                        events=batch.events,
                        steps=list(batch.steps.values()) if batch.steps else [],
                        hooks=list(batch.hooks.values()) if batch.hooks else [],
                        waits=list(batch.waits.values()) if batch.waits else [],
                    ),
                )
            )
        if assumed_free and _unchecked_hook(wave):
            raise _Retry  # the index cannot check that token: decide on a read of its holder
        return wave, work

    # -- the statement ---------------------------------------------------------------------

    def _sql(self, key: tuple[bool, ...]) -> str:
        sql = self._sql_cache.get(key)
        if sql is None:
            sql = self._sql_cache[key] = build_append_sql(self._s, *key)
        return sql

    async def _statement(
        self, conn: Any, run_id: str, cached: _Cached | None, new: RunState, wave: _Wave
    ) -> tuple[int, str | None, int] | None:
        run = new.run
        events = wave.events
        claim = wave.claim
        args: list[Any] = [run_id]
        if wave.created:
            args += created_args(run)
        else:
            assert cached is not None
            args += [cached.pos, wave.start_seq, run.last_seq, run.status.value]
            args.append(codec.encode_run(run))
            if wave.fenced or claim is not None:
                args += list(wave.owner)
            if claim is not None:
                args += list(claim)
        args += rows_args(events, wave.steps, wave.hooks, wave.waits)
        notify = wave.notified = (wave.urgent or wave.became_terminal) and self._notifier.wanted()
        carried: list[str] = []
        if notify:
            # "t:<run>" wakes the other processes' result waiters (wait_for_run(terminal=)),
            # "s:<run>" the followers of its streams (one that never came ends now).
            payload = f"{run_id}:{run.last_seq}"
            if wave.became_terminal:
                payload += f",t:{run_id},s:{run_id}"
            carried = self._notifier.take(MAX_PAYLOAD - len(payload))
            if carried:  # the notifier's pending news goes out with this NOTIFY
                payload += "," + ",".join(carried)
            args += [self._channel, payload]
        key = (
            wave.created,
            wave.fenced or claim is not None,
            claim is not None,
            bool(wave.steps),
            bool(wave.hooks),
            bool(wave.waits),
            notify,
        )
        sql = self._sql(key)
        fault = self.fault
        if fault is not None:
            await fault("before", conn)
        self.stats.statements += 1
        try:
            row = await conn.fetchrow(sql, *args)
            if fault is not None:
                await fault("after", conn)
        except BaseException:
            self._give_back(carried)  # (sent twice if it did commit: a hint, harmless)
            raise
        if row["pos"] is None:
            self._give_back(carried)
            return None
        return row["pos"], row["owner_id"], row["owner_epoch"]

    def _give_back(self, items: list[str]) -> None:
        for item in items:
            self._notifier.add(item)

    async def _probe(self, run_id: str, wave: _Wave) -> tuple[int, str | None, int] | None:
        """After a lost reply: the run's ``(pos, owner)`` if the wave's first event is stored."""
        if not wave.events:
            return None  # a claim alone: re-applied on a fresh read
        first = wave.events[0]
        for delay in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0):
            await asyncio.sleep(delay)
            try:
                async with self._pool.acquire() as conn:
                    row = await conn.fetchrow(self._probe_sql, run_id, first.seq)
            except CONNECTION_ERRORS:
                continue
            if row is not None and row["event_id"] == first.event_id:
                return row["pos"], row["owner_id"], row["owner_epoch"]
            return None
        raise EntityConflictError(
            f"the outcome of an append to run {run_id!r} is unknown: the database did not "
            "answer; read the run to see whether it was stored"
        )


_LOST: Final = (-1, None, -1)  # a statement whose reply never came
_replace: Final = msgspec.structs.replace


def _creates_run(items: list[_Pending]) -> bool:
    events = items[0].events
    return bool(events) and isinstance(events[0], RunCreated)


def _unchecked_hook(wave: _Wave) -> bool:
    """Whether the wave creates a hook it also ends (disposed, or its run ended).

    The live-token index sees only the hooks the statement leaves active, so it cannot
    refuse such a hook's token: a token assumed free must then be read.
    """
    hooks = wave.hooks
    return any(
        isinstance(ev, HookCreated) and hooks[ev.correlation_id].status is not HookStatus.ACTIVE
        for ev in wave.events
    )


def _always(engine_id: str) -> bool:
    return True


def _ignore(run_id: str) -> None:
    pass


def _with_owner(
    outcome: EventResult | WorldflowError, owner_id: str | None, owner_epoch: int
) -> EventResult | WorldflowError:
    if not isinstance(outcome, EventResult):
        return outcome
    run = _replace(outcome.run, owner_id=owner_id, owner_epoch=owner_epoch)
    return _replace(outcome, run=run)
