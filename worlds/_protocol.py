"""The World contract: storage + queue + streams + notifications, as small role protocols.

A world holds one append-only event log per run and keeps views (runs, steps, hooks, waits)
in step with it. :meth:`EventLog.append` is the only write path for runs; it applies the
rules below atomically per batch and returns the updated views.

Rules every world enforces (``worldflow.worlds.testing`` checks each):

* ``run_created`` is a run's first event; appending it to an existing run, or a second
  ``step_created`` / ``wait_created`` / ``hook_created`` for the same correlation id, raises
  :class:`~worldflow.EntityConflictError` (the engine reads it as "already done").
* Any event but ``run_created`` on an unknown run raises :class:`~worldflow.RunNotFoundError`.
* On a terminal run nothing is accepted but the result of a step that is ``running``
  (:class:`~worldflow.RunTerminalError`), except that ``run_cancelled`` on a cancelled run is a
  no-op success.
* A step event on a missing step raises :class:`~worldflow.StepNotFoundError`; a result on a
  terminal step raises :class:`~worldflow.EntityConflictError` (the first completion wins).
* ``wait_completed`` happens once (a second one is an ``EntityConflictError``).
* ``hook_received`` / ``hook_disposed`` on a missing or disposed hook raise
  :class:`~worldflow.HookNotFoundError`. A live token belongs to one hook: ``hook_created``
  with a live token is stored as a ``hook_conflict`` event instead (and returned as such).
* ``child_ended`` tells a parent only what its child recorded: it goes to the hook whose
  token is ``worldflow:child:{child_run_id}``, the named run must exist with the parent as
  its ``parent_run_id`` (else :class:`~worldflow.InvalidEventError`), have ended (else
  :class:`~worldflow.errors.RunNotTerminalError`) with exactly the outcome carried
  (:func:`~worldflow.worlds.child_outcome`; else ``InvalidEventError``), and a parent is
  told once per child (a second one is an ``EntityConflictError``). A fork's first batch
  copies its source's recorded outcomes as they are.
* A terminal run releases its hooks (disposed) and waits (completed).
* ``seq`` is dense per run, from 1, with no gaps or duplicates under concurrent appends.
* A batch is atomic: if one event is refused, none of the batch is stored.
* **Precondition** (``expected_seq``, optional): the batch is stored only if the run's
  ``last_seq`` is exactly ``expected_seq`` before it (``0``: the run does not exist yet);
  otherwise :class:`~worldflow.errors.SeqConflictError` (an ``EntityConflictError``, with the
  run's ``last_seq``) and nothing is stored. It is checked after the fence and before every
  other rule. With it, an event whose ``created_at`` the caller set keeps that time (the
  engine fed the event to the body before appending it); without it the world stamps every
  event.

Ownership (``Ownership`` role; see its docstring): several engines may share a world, and a
run is driven by one of them at a time, its owner. The rules of fencing, checked by every
append (``worldflow.worlds.testing`` checks each):

* **Owner-only events** (:data:`OWNER_ONLY_EVENTS`: ``run_started``, ``step_created``,
  ``step_started``, ``step_interrupted``, ``wait_created``, ``wait_completed``,
  ``hook_created``, ``hook_disposed``, ``state_updated``, ``patch_marked``, ``run_completed``,
  ``run_failed``, ``run_stalled``, ``run_unstalled``: the body's decisions, attempt starts
  and the attempts a stopping owner cut short, timer firings, and the verdict of replaying
  the log against the code) are accepted only

  - with a ``fence`` naming the run's owner and its current ``owner_epoch``; or
  - on an unowned run (``owner_id is None``): with a fence whose ``epoch`` equals the run's
    ``owner_epoch`` and whose engine is live, and then the batch *claims* the run
    (``owner_id`` = the fence's engine, ``owner_epoch`` + 1); or without a fence, which
    claims nothing (tools and single-process tests that drive no engine).

  Anything else raises :class:`~worldflow.errors.RunOwnedElsewhereError` (nothing of the
  batch is stored), before any other rule is checked; a claim by an engine that is not live
  raises :class:`~worldflow.errors.OwnershipLostError`.
* **Anyone may append** the other events, fenced or not, owned run or not: external input
  (``run_created``, ``run_cancelled``, ``run_suspended``, ``run_resumed``, ``step_resumed``,
  ``hook_received``, ``event_raised``) and the results of attempts that already ran
  (``step_completed``, ``step_failed``, ``step_retrying``, ``step_suspended``); the first
  result still wins (the rules above).
* A batch that creates the run with a fence (``epoch`` 0, a live engine) creates it owned
  by that engine at epoch 1; without a fence the run starts unowned at epoch 0.
* Ownership outlives the run's end (it says who finished it); nothing is claimed from a
  terminal run.

Flow control (``FlowControl`` role; see its docstring): concurrency and rate limits held by
the world, so every engine on it counts against the same limit. A concurrency permit lasts
until it is released, its engine stops being live (``Ownership``) or its run ends, so a killed
engine's permits lapse with its TTL and nothing waits on them forever.

Every method is async; options are keyword-only; results are Structs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

import msgspec

from worldflow.worlds._events import (
    AnyEvent,
    HookCreated,
    HookDisposed,
    PatchMarked,
    RunCompleted,
    RunFailed,
    RunStalled,
    RunStarted,
    RunUnstalled,
    StateUpdated,
    StepCreated,
    StepInterrupted,
    StepStarted,
    WaitCompleted,
    WaitCreated,
)
from worldflow.worlds._records import (
    EngineInfo,
    Fence,
    Hook,
    HookStatus,
    Lease,
    Page,
    Permit,
    PermitGrant,
    QueueMessage,
    RunStatus,
    Step,
    StreamChunk,
    StreamInfo,
    Wait,
    WaitStatus,
    WorkflowInfo,
    WorkflowRun,
)

__all__ = [
    "OWNER_ONLY_EVENTS",
    "PERMIT_WAIT_TTL",
    "Catalog",
    "EventLog",
    "EventResult",
    "FlowControl",
    "Notifications",
    "Ownership",
    "Queue",
    "RunStore",
    "Streams",
    "World",
]

OWNER_ONLY_EVENTS: frozenset[type[AnyEvent]] = frozenset(
    {
        RunStarted,
        StepCreated,
        StepStarted,
        StepInterrupted,
        WaitCreated,
        WaitCompleted,
        HookCreated,
        HookDisposed,
        StateUpdated,
        PatchMarked,
        RunCompleted,
        RunFailed,
        RunStalled,
        RunUnstalled,
    }
)
"""The event types only a run's owner may append (see the module docstring); every other
type may come from anyone. Misfiling one is either a liveness bug or a safety hole, so the
conformance suite checks each type."""

PERMIT_WAIT_TTL = 30.0
"""Seconds a waiter keeps its place in a permit's line without asking again (``FlowControl``):
engines ask again well within it; a waiter nobody asks for any more cannot block the line."""

SortOrder = Literal["asc", "desc"]


class EventResult(msgspec.Struct, frozen=True, kw_only=True):
    """What an append stored and the views it changed.

    ``events`` are the stored events in order (stamped with ``seq``, ``event_id`` and
    ``created_at``; a refused hook token shows as ``hook_conflict``). ``steps``, ``hooks`` and
    ``waits`` are the views the batch touched, as they are after it.
    """

    run: WorkflowRun
    events: list[AnyEvent]
    steps: list[Step] = msgspec.field(default_factory=list)
    hooks: list[Hook] = msgspec.field(default_factory=list)
    waits: list[Wait] = msgspec.field(default_factory=list)


@runtime_checkable
class EventLog(Protocol):
    """The per-run append-only event log: the only write path for runs."""

    async def append(
        self,
        run_id: str,
        events: Sequence[AnyEvent],
        *,
        fence: Fence | None = None,
        expected_seq: int | None = None,
    ) -> EventResult:
        """Append a batch of events to ``run_id``'s log atomically; see the module rules.

        ``fence`` says which engine appends and the ``owner_epoch`` it last saw; it decides
        whether owner-only events are accepted (the module's ownership rules). The returned
        run view carries the owner after the batch (a claim shows there). ``expected_seq``
        is the optimistic precondition (the module's rules): the log must be at that seq.
        """
        ...

    async def list_events(
        self, run_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> Page[AnyEvent]:
        """Events of a run with ``seq > after_seq`` in ``seq`` order.

        ``cursor`` is the last returned ``seq`` as a string. Unknown run → ``RunNotFoundError``.
        """
        ...


@runtime_checkable
class RunStore(Protocol):
    """Reads of the views: runs, steps, hooks and waits."""

    async def get_run(self, run_id: str) -> WorkflowRun:
        """The run's view. Unknown run → ``RunNotFoundError``."""
        ...

    async def list_runs(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        order: SortOrder = "desc",
        limit: int = 100,
        cursor: str | None = None,
        forked_from: str | None = None,
    ) -> Page[WorkflowRun]:
        """Runs matching every given filter, in creation order (newest first by default).

        ``metadata`` matches runs whose metadata holds every given key with that value.
        ``forked_from`` matches the forks (and reruns) of that run.
        ``created_after`` is inclusive, ``created_before`` exclusive. Pages never skip or
        repeat a run, even while runs are being created.
        """
        ...

    async def get_step(self, run_id: str, step_id: str) -> Step:
        """One step. Unknown run → ``RunNotFoundError``; unknown step → ``StepNotFoundError``."""
        ...

    async def list_steps(
        self, run_id: str, *, limit: int = 1000, cursor: str | None = None
    ) -> Page[Step]:
        """A run's steps in creation order. Unknown run → ``RunNotFoundError``."""
        ...

    async def get_hook_by_token(self, token: str) -> Hook:
        """The live hook holding ``token``, else ``HookNotFoundError``."""
        ...

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Hook]:
        """Hooks (of one run, or of the world), in creation order."""
        ...

    async def list_waits(
        self,
        *,
        run_id: str | None = None,
        status: WaitStatus | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Wait]:
        """Waits (of one run, or of the world), in creation order."""
        ...

    async def purge(self, run_id: str) -> None:
        """Delete a terminal run and everything of it (log, views, streams, queue messages).

        Unknown run → ``RunNotFoundError``; a run not yet terminal → ``RunNotTerminalError``.
        """
        ...


@runtime_checkable
class Queue(Protocol):
    """At-least-once delivery of :class:`QueueMessage` s on named queues."""

    async def enqueue(
        self,
        queue: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Add a message, deliverable after ``delay`` seconds; return its message id.

        While a message with the same ``idempotency_key`` waits undelivered on the queue, no
        second one is added: its id is returned, and its delivery time moves earlier if the new
        one would be due sooner. Once leased, the key is free again.
        """
        ...

    async def lease(
        self,
        queue: str,
        *,
        lease_for: float,
        max_messages: int = 1,
        wait: float = 0.0,
        workflows: Collection[str] | None = None,
        engine_id: str | None = None,
    ) -> list[Lease]:
        """Take up to ``max_messages`` due messages for ``lease_for`` seconds.

        Waits up to ``wait`` seconds for one to become due. A lease not acked or nacked before
        it expires makes its message deliverable again (with ``attempt`` + 1).

        A consumer that names the ``workflows`` it serves gets only messages whose
        ``workflow_name`` is one of them (or ``None``); the others stay for consumers that
        serve them, in their order. A message addressed to an engine (``engine_id``) goes
        only to the consumer leasing with that ``engine_id`` while that engine is live
        (``Ownership``), and to any consumer serving its workflow once it is not.
        """
        ...

    async def ack(self, lease: Lease) -> None:
        """Done with the message: remove it. An expired or taken-over lease → ``LeaseLostError``."""
        ...

    async def nack(self, lease: Lease, *, delay: float = 0.0) -> None:
        """Give the message back, deliverable again after ``delay`` seconds."""
        ...

    async def extend(self, lease: Lease, *, lease_for: float) -> Lease:
        """Keep a lease for ``lease_for`` more seconds (a long step's heartbeat)."""
        ...


@runtime_checkable
class Streams(Protocol):
    """Append-only chunk streams, named per run, read with a live tail."""

    async def write_stream(self, run_id: str, name: str, chunks: Sequence[bytes]) -> int:
        """Append chunks to the stream (created on first write); return its new length.

        Unknown run → ``RunNotFoundError``; a closed stream → ``EntityConflictError``.
        """
        ...

    async def close_stream(self, run_id: str, name: str) -> None:
        """Mark the stream finished (idempotent); live readers end after the last chunk."""
        ...

    def read_stream(
        self, run_id: str, name: str, *, start: int = 0, follow: bool = True
    ) -> AsyncIterator[StreamChunk]:
        """Chunks from index ``start``; with ``follow`` wait for new ones until closed.

        Unknown stream → ``StreamNotFoundError`` on first iteration (a run that has no
        stream of that name *yet* but is not terminal is followed until it appears).
        """
        ...

    async def list_streams(self, run_id: str) -> list[StreamInfo]:
        """The run's streams. Unknown run → ``RunNotFoundError``."""
        ...


@runtime_checkable
class Notifications(Protocol):
    """Wake-ups when logs grow, so readers wait instead of polling."""

    async def wait_for_run(
        self,
        run_id: str,
        *,
        after_seq: int,
        timeout: float | None = None,
        terminal: bool = False,
    ) -> int:
        """Return the run's ``last_seq`` as soon as it is greater than ``after_seq``.

        With ``terminal=True``, only once it is greater *and* the run is terminal
        (completed, failed or cancelled): a waiter for the result (``Run.result()``) wakes
        once, not on every append of the run. Returns the current ``last_seq`` when
        ``timeout`` passes first (then it may be greater than ``after_seq``, the run not yet
        terminal). Unknown run → ``RunNotFoundError``.
        """
        ...

    async def wait_for_world(self, *, after: int, timeout: float | None = None) -> int:
        """Return the world's change counter as soon as it exceeds ``after``.

        The counter grows with every stored append (any run); ``after=0`` with ``timeout=0``
        reads it.
        """
        ...


@runtime_checkable
class Catalog(Protocol):
    """What the engines on a world serve: their workflows' descriptions, for clients.

    Engines publish an entry per workflow when they start; a client without workflow code
    lists them (``Client.list_workflows``, the inspector, Mastra's ``listWorkflows``). Entries
    are stored (they outlive the engine that published them), and a read tells which live
    engines serve each one (from ``Ownership``'s registrations).
    """

    async def publish_workflows(self, workflows: Sequence[WorkflowInfo]) -> None:
        """Store these entries, each replacing the stored entry of its name (last publish
        wins: the newest deploy describes the workflow). Their ``engines`` is ignored."""
        ...

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Every published entry, by name, with ``engines`` set to the ids of the live
        engines registered with that workflow (empty when none is)."""
        ...

    async def get_workflow(self, name: str) -> WorkflowInfo:
        """The entry of ``name`` (``engines`` filled in as in :meth:`list_workflows`).

        Never published → :class:`~worldflow.errors.WorkflowNotRegisteredError`.
        """
        ...


@runtime_checkable
class Ownership(Protocol):
    """Engines and the runs they own: liveness by heartbeat, takeover of a dead engine's runs.

    An engine registers (a fresh id each time it starts, never reused) and heartbeats more
    often than its ``ttl``; it is *live* until ``ttl`` seconds pass (on the world's clock)
    without one. A run's owner is the engine that drives it (``WorkflowRun.owner_id``); each
    change of owner adds one to ``owner_epoch``, and appends carry a :class:`Fence` so a
    former owner (paused, cut off, declared dead) can no longer decide anything for the run
    (the module's ownership rules). Live engines sweep with :meth:`claim_orphans` to take
    over the runs of dead engines, and on a clean exit an engine :meth:`deregister_engine` s,
    which hands its runs back at once.
    """

    async def register_engine(self, *, workflows: Collection[str], ttl: float) -> EngineInfo:
        """Register a new engine serving ``workflows`` and live for ``ttl`` seconds (> 0)."""
        ...

    async def heartbeat(self, engine_id: str) -> EngineInfo:
        """Keep the engine live for another ``ttl`` seconds from now.

        An engine that is no longer live (its ``ttl`` passed, it deregistered, or it is
        unknown) → :class:`~worldflow.errors.OwnershipLostError`: other engines may own its
        runs now; it must drop them all and register again.
        """
        ...

    async def deregister_engine(self, engine_id: str) -> int:
        """A clean exit: release every non-terminal run the engine owns (``owner_id`` back
        to ``None``, ``owner_epoch`` kept, so another engine claims it with no TTL wait)
        and forget the engine. Returns how many runs were released; idempotent."""
        ...

    async def list_engines(self) -> list[EngineInfo]:
        """The live engines, oldest registration first."""
        ...

    async def claim_orphans(
        self, engine_id: str, *, workflows: Collection[str], limit: int
    ) -> list[WorkflowRun]:
        """Take up to ``limit`` orphaned runs of ``workflows`` for ``engine_id``.

        An orphan is a ``pending``, ``running`` or ``stalled`` run whose owner is ``None``
        or an engine that is not live (a claimer replays a stalled run against its code).
        Each claimed run gets ``owner_id`` = ``engine_id`` and ``owner_epoch`` + 1; the
        returned views show that. Oldest runs first. Two concurrent
        claims never return the same run. A caller that is not live →
        :class:`~worldflow.errors.OwnershipLostError`.
        """
        ...

    async def release_runs(self, engine_id: str, run_ids: Collection[str]) -> int:
        """Release those of ``run_ids`` that ``engine_id`` owns (``owner_id`` back to
        ``None``, epoch kept), e.g. runs it stops driving; returns how many it released."""
        ...


@runtime_checkable
class FlowControl(Protocol):
    """Permits on named keys: concurrency and rate limits shared by every engine on the world.

    A key (``"wf:shop:checkout|customer-42"``) names one limit; its callers pass the limit
    with every ask (the asker's limit decides its own ask). Rules (the conformance suite
    checks each):

    * **Concurrency** (``period`` ``None``): at most ``limit`` granted permits count at once.
      A granted permit counts until :meth:`release_permit`, until its ``engine_id`` is no
      longer live (TTL passed, deregistered), or until its ``run_id`` is terminal or purged.
    * **Rate** (``period`` seconds): at most ``limit`` grants within any ``period``; a grant
      counts for ``period`` seconds from when it was given, released or not.
    * The same ``holder`` asking again while its permit counts gets it again (idempotent)
      and the permit moves to the asking engine (a run taken over keeps its permit).
    * A refused ask puts the holder in line; a freed permit goes to the line in order of
      ``priority`` (higher first), then of when each first asked: a holder is granted only
      while fewer waiters are before it than permits are free. A waiter leaves the line when
      granted, released, when its engine is not live, its run ends, or it has not asked
      again within :data:`PERMIT_WAIT_TTL` seconds (then it starts at the back).
    * An ask for a run that is terminal → :class:`~worldflow.RunTerminalError`; an unknown
      run → :class:`~worldflow.RunNotFoundError`; a bad argument →
      :class:`~worldflow.InvalidEventError` naming it (``key`` and ``holder`` are 1 to 512
      characters, ``limit`` ≥ 1, ``period`` > 0, ``priority`` a 32-bit int).
    """

    async def acquire_permit(
        self,
        key: str,
        holder: str,
        *,
        run_id: str,
        engine_id: str,
        limit: int,
        period: float | None = None,
        priority: int = 0,
    ) -> PermitGrant:
        """Ask for a permit on ``key`` for ``holder`` (of ``run_id``, on ``engine_id``)."""
        ...

    async def release_permit(self, key: str, holder: str) -> bool:
        """Give back ``holder``'s concurrency permit on ``key``, or leave its line.

        A rate grant keeps counting until it expires. Returns whether anything was removed;
        idempotent.
        """
        ...

    async def list_permits(self, key: str) -> list[Permit]:
        """The permits that count on ``key`` (granted first, in grant order), then its
        line (in the order permits go to it)."""
        ...


@runtime_checkable
class World(
    EventLog, RunStore, Queue, Streams, Notifications, Catalog, Ownership, FlowControl, Protocol
):
    """Everything the engine, the inspector and the CLI need from storage."""

    async def aclose(self) -> None:
        """Release files, connections and background tasks. Idempotent."""
        ...
