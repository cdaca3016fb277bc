"""The control verbs of a :class:`~worldflow.Client` that send to or steer runs that exist:
resume a hook or webhook, raise an event, resume or retry a step, wake a sleep, cancel,
suspend, resume, purge. Each is an append to the run's log followed by a word to whoever
drives the run.
"""

from __future__ import annotations

from typing import Any

import msgspec

from worldflow import _serde
from worldflow._runtime.arguments import (
    actor_argument,
    event_name_argument,
    id_argument,
    reason_argument,
)
from worldflow._runtime.client_base import ClientBase
from worldflow._runtime.views import HookInfo, hook_info
from worldflow._webhooks import (
    DEFAULT_WEBHOOK_TIMEOUT,
    WebhookRequest,
    WebhookResponse,
    is_manual,
    response_for,
    wait_for_reply,
)
from worldflow.errors import (
    EntityConflictError,
    HookNotFoundError,
    RunNotFoundError,
    RunTerminalError,
    StepNotFoundError,
)
from worldflow.worlds import (
    RESERVED_TOKEN_PREFIX,
    EventRaised,
    EventResult,
    Hook,
    HookReceived,
    RunCancelled,
    RunResumed,
    RunStatus,
    RunSuspended,
    Step,
    StepResumed,
    StepStatus,
    StepWoken,
    WaitStatus,
    WaitWoken,
    new_id,
)

__all__ = ["RunControl"]


def _check_user_token(token: str) -> None:
    if token.startswith(RESERVED_TOKEN_PREFIX):
        raise HookNotFoundError(
            f"no hook can be resumed with token {token!r}: tokens starting with "
            f"{RESERVED_TOKEN_PREFIX!r} are the engine's own (a child workflow's outcome "
            "reaches its parent only from the child's end)"
        )


class RunControl(ClientBase):
    """Sending things to runs and steering them (part of :class:`~worldflow.Client`)."""

    # -- sending things to runs --------------------------------------------------------------

    async def resume_hook(
        self, token: str, payload: Any = None, *, actor: str | None = None
    ) -> HookInfo:
        """Send ``payload`` to the hook holding ``token``; the waiting workflow continues.

        Returns the hook (a :class:`~worldflow.HookInfo`). Unknown (or disposed) token →
        ``HookNotFoundError`` (HTTP 404).
        ``actor`` (who sent it) is recorded in ``hook_received``.
        """
        token = id_argument(token, "token")
        _check_user_token(token)
        actor = actor_argument(actor)
        encoded = _serde.encode(payload)
        hook = await self.world.get_hook_by_token(token)
        return hook_info(await self._send_to_hook(hook, encoded, actor))

    async def _send_to_hook(self, hook: Hook, encoded: Any, actor: str | None = None) -> Hook:
        event = HookReceived(
            run_id=hook.run_id, correlation_id=hook.hook_id, payload=encoded, actor=actor
        )
        result = await self._received(event)
        for view in result.hooks:
            if view.hook_id == hook.hook_id:
                return view
        return hook

    async def _received(self, event: HookReceived) -> EventResult:
        """Append a hook's payload and wake whoever drives the run (an engine that drives
        it appends it together with what the body does on it)."""
        result = await self._writes.append(event.run_id, [event])
        await self._woken(result)
        return result

    async def resume_webhook(
        self, token: str, request: WebhookRequest, *, timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    ) -> WebhookResponse:
        """Deliver an HTTP request to the webhook holding ``token``; return what the caller
        gets back (the webhook's ``respond_with``, default ``202 Accepted``).

        For a ``respond_with="manual"`` webhook it waits (up to ``timeout`` seconds) for a
        step to call ``request.respond_with(...)`` and returns that answer; a run that ends
        without answering → :class:`~worldflow.WebhookNotAnsweredError` (HTTP 502) at once,
        no answer in time → :class:`~worldflow.WebhookTimeoutError` (HTTP 504).

        Unknown token, or a token of a plain hook → ``HookNotFoundError`` (HTTP 404).
        """
        if not isinstance(request, WebhookRequest):
            raise TypeError(f"resume_webhook() takes a WebhookRequest, not {request!r}")
        token = id_argument(token, "token")
        _check_user_token(token)
        hook = await self.world.get_hook_by_token(token)
        if not hook.is_webhook:
            raise HookNotFoundError(
                f"token {token!r} belongs to a hook, not a webhook: send it a payload with "
                "resume_hook()"
            )
        if not is_manual(hook.metadata):
            await self._send_to_hook(hook, _serde.encode(request))
            return response_for(hook.metadata)
        reply_to = new_id("strm")  # a stream of the run, named for this one request
        request = msgspec.structs.replace(request, reply_to=reply_to)
        await self._send_to_hook(hook, _serde.encode(request))
        return await wait_for_reply(self.world, hook.run_id, reply_to, timeout=timeout)

    async def raise_event(
        self, run_id: str, name: str, payload: Any = None, *, actor: str | None = None
    ) -> None:
        """Raise the named event for a run (Dapr ``raiseEvent``); kept until the workflow
        waits for it with ``wait_for_event(name)``. ``actor``: who raised it (recorded)."""
        run_id = id_argument(run_id, "run_id")
        name = event_name_argument(name)
        actor = actor_argument(actor)
        event = EventRaised(run_id=run_id, name=name, payload=_serde.encode(payload), actor=actor)
        await self._woken(await self._control("raise_event", run_id, [event]))

    async def _suspended_step(self, run_id: str, step: str) -> Step:
        if step.startswith("step_"):
            try:
                return await self.world.get_step(run_id, step)
            except StepNotFoundError:
                pass
        matches: list[Step] = []
        cursor: str | None = None
        while True:
            page = await self.world.list_steps(run_id, cursor=cursor)
            matches.extend(
                s
                for s in page.items
                if step in (s.step_id, s.step_name, s.step_name.rpartition(":")[2])
            )
            if not page.has_more:
                break
            cursor = page.cursor
        suspended = [s for s in matches if s.status is StepStatus.SUSPENDED]
        if len(suspended) == 1:
            return suspended[0]
        if len(suspended) > 1:
            ids = ", ".join(s.step_id for s in suspended)
            raise EntityConflictError(
                f"several steps named {step!r} of run {run_id} are suspended ({ids}); "
                "resume one by its step id"
            )
        if matches:
            return matches[-1]
        raise StepNotFoundError(f"run {run_id} has no step {step!r} (by id or by name)")

    async def resume_step(
        self, run_id: str, step: str, data: Any = None, *, actor: str | None = None
    ) -> None:
        """Resume a step that called ``suspend()``: it runs again and ``get_resume_data()``
        returns ``data``.

        ``step`` is the step's id or name. A step that is not suspended → an
        :class:`~worldflow.EntityConflictError` saying what it is doing. ``actor``: who
        resumed it (recorded in ``step_resumed``).
        """
        run_id = id_argument(run_id, "run_id")
        step = id_argument(step, "step")
        actor = actor_argument(actor)
        encoded = _serde.encode(data)
        found = await self._suspended_step(run_id, step)
        if found.status is not StepStatus.SUSPENDED:
            raise EntityConflictError(
                f"step {found.step_name!r} ({found.step_id}) of run {run_id} is "
                f"{found.status}, not suspended: only a step waiting in suspend() can be "
                "resumed"
            )
        event = StepResumed(run_id=run_id, correlation_id=found.step_id, data=encoded, actor=actor)
        await self._woken(await self._control("resume_step", run_id, [event]))

    async def wake(
        self, run_id: str, wait_id: str | None = None, *, actor: str | None = None
    ) -> list[str]:
        """End a durable sleep now: the workflow goes on as if its timer had fired.

        Records ``wait_woken`` (with ``actor``, who asked); the engine driving the run then
        completes the wait itself, so a replay takes the same path. ``wait_id`` names one
        sleep; ``None`` wakes every sleep the run is in. Returns the ids woken.

        Raises:
            RunNotFoundError: no such run.
            NotFoundError: the run has no wait ``wait_id``.
            EntityConflictError: nothing to wake: the wait is over, or waits for a named
                event (raise it instead), or the run sleeps nowhere.
        """
        run_id = id_argument(run_id, "run_id")
        actor = actor_argument(actor)
        if wait_id is None:
            await self.world.get_run(run_id)
            page = await self.world.list_waits(run_id=run_id, status=WaitStatus.WAITING)
            ids = [w.wait_id for w in page.items if w.event_name is None and w.resume_at]
            if not ids:
                raise EntityConflictError(f"run {run_id} is not sleeping: there is nothing to wake")
        else:
            ids = [id_argument(wait_id, "wait_id")]
        events = [WaitWoken(run_id=run_id, correlation_id=w, actor=actor) for w in ids]
        await self._woken(await self._control("wake", run_id, events))
        return ids

    async def retry_now(self, run_id: str, step: str, *, actor: str | None = None) -> None:
        """Start the next attempt of a step that is backing off after a failure now, instead
        of at its ``retry_after``.

        Records ``step_woken`` (with ``actor``): it carries no result; the step's code runs
        the attempt and the engine records what it gives. ``step`` is the step's id or name.

        Raises:
            StepNotFoundError: the run has no such step.
            EntityConflictError: the step is not backing off (running, done, suspended, or
                waiting for its first attempt).
        """
        run_id = id_argument(run_id, "run_id")
        step = id_argument(step, "step")
        actor = actor_argument(actor)
        found = await self._suspended_step(run_id, step)
        event = StepWoken(run_id=run_id, correlation_id=found.step_id, actor=actor)
        await self._woken(await self._control("retry_now", run_id, [event]))

    # -- steering runs -----------------------------------------------------------------------

    async def _control(self, verb: str, run_id: str, events: list[Any]) -> EventResult:
        """Append a control verb's events; a run that is unknown or over is refused in the
        caller's words (the world's message speaks of its rules)."""
        try:
            return await self._writes.append(run_id, events)
        except RunNotFoundError:
            raise RunNotFoundError(
                f"no run {run_id!r}: {verb}() acts on an existing run (check the id; "
                "start() creates a run)"
            ) from None
        except RunTerminalError:
            try:
                status = (await self.world.get_run(run_id)).status
            except RunNotFoundError:
                status = RunStatus.COMPLETED
            raise RunTerminalError(
                f"run {run_id} is {status} already: {verb}() acts on a run that is still "
                "going; a finished run can be read, rerun() or purge()d"
            ) from None

    async def cancel(
        self,
        run_id: str,
        reason: str | None = None,
        *,
        output: Any = None,
        actor: str | None = None,
    ) -> None:
        """Cancel (Dapr: terminate) a run: record ``run_cancelled``; the engine driving it
        cancels its running steps. ``output`` is kept as the run's output; ``actor`` (who
        asked) is recorded with the reason.

        Cancelling a cancelled run does nothing; a completed or failed run →
        :class:`~worldflow.RunTerminalError`.
        """
        run_id = id_argument(run_id, "run_id")
        reason = reason_argument(reason)
        actor = actor_argument(actor)
        event = RunCancelled(
            run_id=run_id, reason=reason, output=_serde.encode(output), actor=actor
        )
        await self._cancelled(await self._control("cancel", run_id, [event]))

    async def suspend(
        self, run_id: str, reason: str | None = None, *, actor: str | None = None
    ) -> None:
        """Pause a run: no new work is scheduled (steps already running finish) and hooks and
        events sent meanwhile wait, until :meth:`resume`. Pausing a paused run does nothing.
        ``actor``: who asked (recorded)."""
        run_id = id_argument(run_id, "run_id")
        reason = reason_argument(reason)
        actor = actor_argument(actor)
        run = await self.world.get_run(run_id)
        if run.status is RunStatus.SUSPENDED:
            return
        event = RunSuspended(run_id=run_id, reason=reason, actor=actor)
        await self._woken(await self._control("suspend", run_id, [event]))

    async def resume(self, run_id: str, *, actor: str | None = None) -> None:
        """Unpause a suspended run; a no-op for a run that is not suspended (as in Dapr).
        ``actor``: who asked (recorded)."""
        run_id = id_argument(run_id, "run_id")
        actor = actor_argument(actor)
        run = await self.world.get_run(run_id)
        if run.status is not RunStatus.SUSPENDED:
            return
        event = RunResumed(run_id=run_id, actor=actor)
        await self._woken(await self._writes.append(run_id, [event]))

    async def purge(self, run_id: str) -> None:
        """Delete a finished run's log, views and streams.

        Unknown run → ``RunNotFoundError``; a run still going → ``RunNotTerminalError``.
        """
        run_id = id_argument(run_id, "run_id")
        await self.world.purge(run_id)
        self._purged(run_id)
