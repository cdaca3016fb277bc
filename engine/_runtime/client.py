"""``Client``: the control plane of a world, with no workflow code.

::

    async with Client(await open_world("file://./.worldflow")) as client:
        run = await client.start("shop:checkout", "o-1")      # by registered name
        await client.resume_hook("approve:o-1", {"ok": True})
        print(await run.result(timeout=60))

Every write is an append to the run's log (the world checks it) followed by a message on the
``runs`` queue naming the run's workflow and owner, so the engine that drives the run (or
any engine serving the workflow, if it has no live owner) picks it up. A run started for a
workflow no engine serves right now waits, ``pending``, until one registers.

An :class:`~worldflow.Engine` is a Client plus the worker: it inherits every verb here and
only changes what happens after a write (it drives runs it owns itself, without the queue).

Here: starting runs (``start``, ``rerun``, ``fork``) and finding them; the verbs that send to
and steer existing runs are in :mod:`.control`, the shared state in :mod:`.client_base`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import msgspec

from worldflow import _serde
from worldflow._call_arguments import encode_arguments
from worldflow._durations import Duration, parse_duration
from worldflow._replay.fork import plan_fork
from worldflow._runtime.arguments import (
    actor_argument,
    id_argument,
    metadata_argument,
    optional_id_argument,
)
from worldflow._runtime.control import RunControl
from worldflow._runtime.run import Run, RunInfo, run_info
from worldflow._runtime.telemetry import start_span_context
from worldflow._runtime.views import HookInfo, hook_info
from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    RunNotFoundError,
    StepNotFoundError,
)
from worldflow.worlds import (
    Page,
    Payload,
    RunCreated,
    RunStarted,
    RunStatus,
    Step,
    WorkflowInfo,
    new_id,
)
from worldflow.worlds._ids import random_bytes

__all__ = ["Client", "IdTaken"]

_MISSING = object()
_KINDS = {kind.name.lower(): kind for kind in inspect._ParameterKind}


class IdTaken(Exception):
    """A new run's first append was refused because a run of its id exists."""


def _catalog_signature(entry: WorkflowInfo) -> inspect.Signature:
    """A signature to bind a call to, built from a catalog entry's parameters (defaults are
    never recorded, so a stand-in default is enough)."""
    params = [
        inspect.Parameter(
            p.name,
            _KINDS.get(p.kind, inspect.Parameter.KEYWORD_ONLY),
            default=inspect.Parameter.empty if p.required else _MISSING,
        )
        for p in entry.parameters
    ]
    return inspect.Signature(params)


class Client(RunControl):
    """Starts, finds and steers runs on a world; needs no workflow code.

    Args:
        world: The world; ``None`` opens the default one (``open_world()``) on enter and
            closes it on exit.
        clock: Time for ``Run.result(timeout=)``; the world's clock if it has one.
        telemetry: Spans and counters of what this client and its engine write
            (:class:`~worldflow.Telemetry`): ``True`` turns them on (spans when
            ``opentelemetry-api`` is installed, counters always), ``None`` or ``False``
            (default) leaves appends unobserved.

    A Client on a given world is usable at once (``async with`` is optional); one that opens
    its own world must be entered.
    """

    # -- starting runs -----------------------------------------------------------------------

    async def _encode_input(
        self, workflow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, Payload, bool]:
        """``(workflow name, recorded input, whether this process serves it)``."""
        definition = self._definition(workflow)
        if definition is not None:
            return (
                definition.name,
                definition.encode_input(*args, **kwargs),
                self._serves(definition.name),
            )
        entry = await self.world.get_workflow(workflow)
        payload = encode_arguments(
            _catalog_signature(entry), f"workflow {entry.name!r}", args, kwargs
        )
        return entry.name, payload, False

    async def start(
        self,
        workflow: Callable[..., Any] | str,
        *args: Any,
        run_id: str | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        initial_state: Any = None,
        delay: Duration | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> Run:
        """Start a run of ``workflow(*args, **kwargs)`` and return its handle at once.

        Args:
            workflow: The ``@workflow`` function, or its registered name (a client without
                the code binds the arguments to the parameters the world's catalog lists).
            run_id: The run's id; a run with this id already existing is an
                :class:`~worldflow.EntityConflictError` (HTTP 409). Default: a fresh
                ``wrun_`` id.
            resource_id: The resource (user, tenant) the run is for; runs can be listed by it.
            metadata: Searchable string metadata.
            initial_state: The workflow state's starting value (``get_state()``).
            delay: Start it no sooner than this from now (seconds, ``"1h"``, ``timedelta``):
                the run is created at once, ``pending`` with ``start_at`` set, and an
                engine starts it when it is due (a restart in between changes nothing).
            priority: Among runs waiting for a flow-control permit of their workflow
                (``@workflow(concurrency=, rate_limit=)``) and their steps', higher goes
                first (a 32-bit int; default 0).

        Raises:
            WorkflowNotRegisteredError: no such workflow (not a ``@workflow`` function, or a
                name no engine has published).
            TypeError: the arguments do not fit the workflow's signature.
            SerializationError: an argument cannot be recorded.
        """
        rid = new_id("wrun") if run_id is None else id_argument(run_id, "run_id")
        resource_id = optional_id_argument(resource_id, "resource_id")
        meta = metadata_argument(metadata)
        start_at = None
        if delay is not None:
            try:
                wait = parse_duration(delay)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"start(delay=...): {exc}") from None
            start_at = self.clock.now() + wait
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"start(priority=...) is an int, not {priority!r}")
        if not -(2**31) <= priority < 2**31:
            raise ValueError(f"start(priority=...) must be a 32-bit int, got {priority}")
        name, payload, served = await self._encode_input(workflow, args, kwargs)
        state = _serde.encode(initial_state)
        created = RunCreated(
            seed=random_bytes(16).hex(),  # os.urandom, read ahead in blocks
            run_id=rid,
            workflow_name=name,
            input=payload,
            resource_id=resource_id,
            metadata=meta,
            initial_state=state,
            trace_context=start_span_context(name, rid) if self.telemetry else {},
            start_at=start_at,
            priority=priority,
        )
        try:
            await self._begin(created, served)
        except IdTaken:
            raise EntityConflictError(
                f"a run with id {rid!r} already exists; run ids are unique (start it under "
                "another id, or get_run() the existing one)"
            ) from None
        return Run(self, rid)

    async def _begin(self, created: RunCreated, served: bool) -> None:
        """Append a new run's first batch and hand the run to whoever drives it; the id
        being taken raises :class:`IdTaken` (an engine fuses this with the body's first
        decisions where it drives the run itself)."""
        events, fence = self._start_events(created, served)
        try:
            result = await self._writes.append(created.run_id, events, fence=fence)
        except EntityConflictError as exc:
            raise IdTaken from exc
        await self._created(result)

    async def rerun(self, run_id: str, *, actor: str | None = None) -> Run:
        """Start a new run with an old run's input, resource id, metadata and initial state.

        The case "from the start" of :meth:`fork`: the new run's ``forked_from`` is the old
        run; the old run's log is left as it is. ``actor`` (who asked) is recorded in the new
        run's ``run_created``.
        """
        return await self.fork(run_id, actor=actor)

    async def fork(
        self,
        source_run_id: str,
        /,
        *,
        from_step: str | None = None,
        input: dict[str, Any] | None = None,
        run_id: str | None = None,
        actor: str | None = None,
    ) -> Run:
        """Start a new run that reuses what ``source_run_id`` recorded before one of its steps
        and runs from there, that step with a new input.

        The fork's log begins with copies of the source's events up to the step (with the
        fork's own ids), so it replays without the source; the source's log is never
        touched. Its ``forked_from`` (and ``forked_from_step``) name the source; the source's
        forks list with ``list_runs(forked_from=...)``.

        Args:
            source_run_id: The run to fork.
            from_step: The step to run again: its step id, or its name if one call has it.
                The results of the operations the workflow started before calling it are
                reused (in call order: a step started earlier in the same ``gather`` is
                reused, one started after it runs again); hook payloads, events and timers
                recorded after it was called are not. ``None``: from the start (a
                :meth:`rerun`).
            input: The new arguments, ``{parameter: value}``, of that step (or of the
                workflow, from the start); ``None`` keeps the recorded ones.
            run_id: The fork's run id (default a fresh ``wrun_`` id); taken →
                :class:`~worldflow.EntityConflictError`.
            actor: Who asked (recorded in the fork's ``run_created``).

        Raises:
            RunNotFoundError: no such source run.
            StepNotFoundError: the source has no such step.
            EntityConflictError: the name fits several steps (pass a step id); the run id
                is taken; a hook token the copied part creates is held by a live hook.
            TypeError: ``input`` does not fit the step's (or workflow's) parameters.
        """
        source_run_id = id_argument(source_run_id, "run_id")
        rid = new_id("wrun") if run_id is None else id_argument(run_id, "run_id")
        actor = actor_argument(actor)
        source = await self.world.get_run(source_run_id)
        events = await self._all_events(source_run_id)
        first = events[0] if events else None
        if not isinstance(first, RunCreated):
            raise RunNotFoundError(f"run {source_run_id!r} has no run_created to fork from")
        new_input = None if input is None else self._fork_input(input)
        seed = random_bytes(16).hex()  # os.urandom, read ahead in blocks
        created = RunCreated(
            seed=seed,
            run_id=rid,
            workflow_name=source.workflow_name,
            input=first.input,
            resource_id=first.resource_id,
            metadata=dict(first.metadata),
            initial_state=first.initial_state,
            priority=source.priority,
            forked_from=source_run_id,  # not the parent: a fork's end is nobody's child outcome
            actor=actor,
        )
        copies: list[Any] = []
        if from_step is None:
            if new_input is not None:
                definition = self._definition(source.workflow_name)
                if definition is not None:
                    definition.decode_input(new_input)  # TypeError: not its parameters
                created = msgspec.structs.replace(created, input=new_input)
        else:
            step = await self._fork_step(source_run_id, id_argument(from_step, "from_step"))
            plan = plan_fork(
                events,
                step_id=step.step_id,
                fork_run_id=rid,
                fork_seed=seed,
                ids_at=self.clock.now(),
                step_input=new_input,
            )
            if new_input is not None:
                step_code = self._step_definition(plan.step_name)
                if step_code is not None:
                    step_code.decode_input(new_input)  # TypeError: not its parameters
            for token in plan.user_tokens:
                await self._check_token_free(token, source_run_id)
            created = msgspec.structs.replace(created, fork=plan.fork)
            copies = plan.events
        batch, fence = self._start_events(created, self._serves(source.workflow_name))
        if copies:
            if any(isinstance(e, RunStarted) for e in batch):
                copies = copies[1:]  # the fork's run_started is the one starting it here
            batch = [*batch, *copies]
        try:
            result = await self._writes.append(rid, batch, fence=fence)
        except EntityConflictError:
            if await self._exists(rid):
                raise EntityConflictError(
                    f"a run with id {rid!r} already exists; run ids are unique"
                ) from None
            raise
        await self._created(result)
        return Run(self, rid)

    def _fork_input(self, value: Any) -> Payload:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(
                "`input` must be a mapping of parameter names to values, "
                f"{{'amount': 10}}, not {value!r:.80}"
            )
        return _serde.encode(value)

    async def _all_events(self, run_id: str) -> list[Any]:
        out: list[Any] = []
        while True:
            page = await self.world.list_events(run_id, after_seq=len(out))
            out.extend(page.items)
            if not page.has_more or not page.items:
                return out

    async def _exists(self, run_id: str) -> bool:
        try:
            await self.world.get_run(run_id)
        except RunNotFoundError:
            return False
        return True

    async def _check_token_free(self, token: str, source_run_id: str) -> None:
        try:
            hook = await self.world.get_hook_by_token(token)
        except HookNotFoundError:
            return
        raise EntityConflictError(
            f"the fork would create hook {token!r} as the source did, but run {hook.run_id} "
            "holds that token now: finish or cancel it (or dispose its hook) first, or fork "
            "from an earlier step"
        )

    async def _fork_step(self, run_id: str, step: str) -> Step:
        if step.startswith("step_"):
            try:
                return await self.world.get_step(run_id, step)
            except StepNotFoundError:
                pass
        matches = [
            s
            for s in await self._all_steps(run_id)
            if step in (s.step_name, s.step_name.rpartition(":")[2])
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(s.step_id for s in matches[:10])
            raise EntityConflictError(
                f"{len(matches)} calls of step {step!r} in run {run_id} ({ids}): fork from one "
                "by its step id"
            )
        raise StepNotFoundError(f"run {run_id} has no step {step!r} (by id or by name)")

    async def _all_steps(self, run_id: str) -> list[Step]:
        out: list[Step] = []
        cursor: str | None = None
        while True:
            page = await self.world.list_steps(run_id, cursor=cursor)
            out.extend(page.items)
            if not page.has_more:
                return out
            cursor = page.cursor

    # -- finding runs and workflows ----------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """A handle on an existing run. Unknown run → :class:`~worldflow.RunNotFoundError`."""
        await self.world.get_run(id_argument(run_id, "run_id"))
        return Run(self, run_id)

    async def list_runs(
        self,
        *,
        workflow: Callable[..., Any] | str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        forked_from: str | None = None,
    ) -> Page[RunInfo]:
        """Runs matching every given filter, newest first; pass ``cursor`` for the next page.

        ``forked_from`` lists the forks (and reruns) of that run."""
        name: str | None = None
        if isinstance(workflow, str):
            name = workflow
        elif workflow is not None:
            definition = self._definition(workflow)
            assert definition is not None
            name = definition.name
        page = await self.world.list_runs(
            workflow_name=name,
            status=status,
            resource_id=resource_id,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
            forked_from=None if forked_from is None else id_argument(forked_from, "forked_from"),
        )
        return Page(
            items=[run_info(r) for r in page.items], cursor=page.cursor, has_more=page.has_more
        )

    async def list_workflows(self) -> list[WorkflowInfo]:
        """The workflows engines have published on this world (name, parameters with JSON
        Schemas, step names, docstring), each with the live engines serving it."""
        return await self.world.list_workflows()

    async def get_workflow(self, name: str) -> WorkflowInfo:
        """One published workflow; unknown → ``WorkflowNotRegisteredError``."""
        return await self.world.get_workflow(name)

    async def get_hook_by_token(self, token: str) -> HookInfo:
        """The live hook holding ``token`` (its metadata decoded); unknown →
        :class:`~worldflow.HookNotFoundError`."""
        return hook_info(await self.world.get_hook_by_token(id_argument(token, "token")))
