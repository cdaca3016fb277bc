"""The runtime API as module-level functions on a default engine (the Vercel ``workflow/api``
shape).

An :class:`~worldflow.Engine` makes itself the default engine while it is entered (the most
recently entered one wins, and the previous one comes back when it exits);
:func:`set_default_engine` sets one explicitly::

    from worldflow import api

    async with Engine(workflows=[checkout]):
        run = await api.start(checkout, "o-1")
        await api.resume_hook("approve:o-1", {"ok": True})
        print(await run.result())
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worldflow._durations import Duration
from worldflow._webhooks import DEFAULT_WEBHOOK_TIMEOUT
from worldflow.errors import ConfigurationError

if TYPE_CHECKING:
    from worldflow._runtime.engine import Engine
    from worldflow._runtime.run import Run, RunInfo
    from worldflow._runtime.views import HookInfo
    from worldflow._webhooks import WebhookRequest, WebhookResponse
    from worldflow.worlds import Page, RunStatus, WorkflowInfo

__all__ = [
    "cancel",
    "fail",
    "fork",
    "get_default_engine",
    "get_hook_by_token",
    "get_run",
    "get_workflow",
    "list_runs",
    "list_workflows",
    "purge",
    "raise_event",
    "rerun",
    "resume",
    "resume_hook",
    "resume_step",
    "resume_webhook",
    "retry_now",
    "set_default_engine",
    "start",
    "suspend",
    "unstall",
    "wake",
]

_default: Engine | None = None


def set_default_engine(engine: Engine | None) -> Engine | None:
    """Make ``engine`` the one the module-level functions use; return the previous one."""
    global _default
    previous, _default = _default, engine
    return previous


def get_default_engine() -> Engine:
    """The default engine; :class:`~worldflow.ConfigurationError` when there is none."""
    if _default is None:
        raise ConfigurationError(
            "no default worldflow engine: call these functions inside `async with "
            "Engine(...)`, or register one with worldflow.api.set_default_engine(engine)"
        )
    return _default


async def start(
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
    """Start a run on the default engine (see :meth:`Engine.start`)."""
    return await get_default_engine().start(
        workflow,
        *args,
        run_id=run_id,
        resource_id=resource_id,
        metadata=metadata,
        initial_state=initial_state,
        delay=delay,
        priority=priority,
        **kwargs,
    )


async def get_run(run_id: str) -> Run:
    """A handle on an existing run (see :meth:`Engine.get_run`)."""
    return await get_default_engine().get_run(run_id)


async def list_runs(
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
    """Runs matching the filters, newest first (see :meth:`Engine.list_runs`)."""
    return await get_default_engine().list_runs(
        workflow=workflow,
        status=status,
        resource_id=resource_id,
        metadata=metadata,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
        forked_from=forked_from,
    )


async def list_workflows() -> list[WorkflowInfo]:
    """The workflows published on the default engine's world (see
    :meth:`Client.list_workflows`)."""
    return await get_default_engine().list_workflows()


async def get_workflow(name: str) -> WorkflowInfo:
    """One published workflow's details (see :meth:`Client.get_workflow`)."""
    return await get_default_engine().get_workflow(name)


async def resume_hook(token: str, payload: Any = None, *, actor: str | None = None) -> HookInfo:
    """Send ``payload`` to the hook holding ``token`` (see :meth:`Engine.resume_hook`)."""
    return await get_default_engine().resume_hook(token, payload, actor=actor)


async def get_hook_by_token(token: str) -> HookInfo:
    """The live hook holding ``token`` (see :meth:`Engine.get_hook_by_token`)."""
    return await get_default_engine().get_hook_by_token(token)


async def resume_webhook(
    token: str, request: WebhookRequest, *, timeout: float = DEFAULT_WEBHOOK_TIMEOUT
) -> WebhookResponse:
    """Deliver an HTTP request to a webhook (see :meth:`Engine.resume_webhook`)."""
    return await get_default_engine().resume_webhook(token, request, timeout=timeout)


async def raise_event(
    run_id: str, name: str, payload: Any = None, *, actor: str | None = None
) -> None:
    """Raise a named event for a run (see :meth:`Engine.raise_event`)."""
    await get_default_engine().raise_event(run_id, name, payload, actor=actor)


async def resume_step(
    run_id: str, step: str, data: Any = None, *, actor: str | None = None
) -> None:
    """Resume a suspended step (see :meth:`Engine.resume_step`)."""
    await get_default_engine().resume_step(run_id, step, data, actor=actor)


async def wake(run_id: str, wait_id: str | None = None, *, actor: str | None = None) -> list[str]:
    """End a run's durable sleep now (see :meth:`Client.wake`)."""
    return await get_default_engine().wake(run_id, wait_id, actor=actor)


async def retry_now(run_id: str, step: str, *, actor: str | None = None) -> None:
    """Start a backing-off step's next attempt now (see :meth:`Client.retry_now`)."""
    await get_default_engine().retry_now(run_id, step, actor=actor)


async def cancel(
    run_id: str, reason: str | None = None, *, output: Any = None, actor: str | None = None
) -> None:
    """Cancel a run (see :meth:`Engine.cancel`)."""
    await get_default_engine().cancel(run_id, reason, output=output, actor=actor)


async def suspend(run_id: str, reason: str | None = None, *, actor: str | None = None) -> None:
    """Pause a run (see :meth:`Engine.suspend`)."""
    await get_default_engine().suspend(run_id, reason, actor=actor)


async def resume(run_id: str, *, actor: str | None = None) -> None:
    """Unpause a run (see :meth:`Engine.resume`)."""
    await get_default_engine().resume(run_id, actor=actor)


async def unstall(run_id: str) -> RunStatus:
    """Replay a stalled run against the code (see :meth:`Engine.unstall`)."""
    return await get_default_engine().unstall(run_id)


async def fail(run_id: str, reason: str | None = None, *, actor: str | None = None) -> None:
    """Fail a stalled run for good (see :meth:`Engine.fail`)."""
    await get_default_engine().fail(run_id, reason, actor=actor)


async def purge(run_id: str) -> None:
    """Delete a finished run's data (see :meth:`Engine.purge`)."""
    await get_default_engine().purge(run_id)


async def rerun(run_id: str, *, actor: str | None = None) -> Run:
    """Start a new run from an old one's input (see :meth:`Engine.rerun`)."""
    return await get_default_engine().rerun(run_id, actor=actor)


async def fork(
    source_run_id: str,
    /,
    *,
    from_step: str | None = None,
    input: dict[str, Any] | None = None,
    run_id: str | None = None,
    actor: str | None = None,
) -> Run:
    """Fork a run from one of its steps, with a new input for it (see :meth:`Client.fork`)."""
    return await get_default_engine().fork(
        source_run_id, from_step=from_step, input=input, run_id=run_id, actor=actor
    )
