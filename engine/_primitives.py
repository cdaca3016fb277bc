"""The authoring API used inside workflow bodies.

Each function here works only while a workflow body runs (it raises
:class:`~worldflow.NotInWorkflowError` anywhere else) and is replay-safe: what it returns or
records depends only on the run's log, so a replay after a restart sees the same values.

::

    @workflow
    async def onboarding(user_id: str) -> str:
        await sleep("1d")
        approval = create_hook(token=f"approve:{user_id}")
        decision = await approval
        shipped = await wait_for_event("shipped", timeout="7d")
        logger.info("done at %s", now())
        return decision["answer"]
"""

from __future__ import annotations

import logging
import uuid as _uuid
from collections.abc import Coroutine, Generator
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import msgspec

from worldflow._durations import Duration
from worldflow._replay.current import current_instance, in_workflow, require_instance
from worldflow._replay.durable_ops import HookOp
from worldflow._replay.instance import HookClosed, WorkflowInstance, WorkflowMetadata
from worldflow._runtime.step_info import get_writable, step_workflow_metadata
from worldflow._webhooks import (
    WebhookRequest,
    WebhookResponse,
    user_metadata,
    webhook_metadata,
    webhook_url,
)
from worldflow.errors import DeterminismViolationError

__all__ = [
    "Hook",
    "WorkflowMetadata",
    "WorkflowStreamHandle",
    "create_hook",
    "create_webhook",
    "deprecate_patch",
    "get_state",
    "get_workflow_metadata",
    "in_workflow",
    "is_replaying",
    "logger",
    "now",
    "patched",
    "random",
    "set_state",
    "sleep",
    "uuid4",
    "wait_for_event",
    "workflow_writable",
]

T = TypeVar("T")


def sleep(duration: Duration | datetime) -> Coroutine[Any, Any, None]:
    """Sleep durably: for a duration (``30``, ``"1h30m"``, ``timedelta``) or until a datetime.

    The timer is recorded in the run's log and survives restarts; the run holds no worker
    while it sleeps. ``asyncio.sleep`` is refused in workflow bodies because it would not.

    >>> await sleep("1d")  # doctest: +SKIP
    """
    return require_instance("worldflow.sleep()").sleep(duration)


class Hook(Generic[T]):
    """A hook: a token outsiders use to send payloads into the run.

    ``await hook`` returns the next payload; ``async for payload in hook`` takes payloads
    until :meth:`dispose`. Payloads sent before the body awaits are kept in order. A hook
    whose token is held by another live hook raises :class:`~worldflow.HookConflictError`
    where it is awaited. Use it as a context manager to dispose it on exit::

        with create_hook(token=f"approve:{order_id}") as hook:
            decision = await hook

    Attributes:
        token: The token to pass to ``resume_hook`` (or in the webhook URL).
        id: The hook's correlation id.
        is_webhook: Whether the payloads are :class:`WebhookRequest` objects.
    """

    def __init__(self, instance: WorkflowInstance, op: HookOp) -> None:
        self._instance = instance
        self._op = op
        self.token = op.token
        self.id = op.corr
        self.is_webhook = op.is_webhook

    @property
    def metadata(self) -> Any:
        """The metadata the hook was created with."""
        return user_metadata(self._op.metadata, is_webhook=self.is_webhook)

    async def receive(self) -> T:
        """The next payload (the same as ``await hook``; handy for ``asyncio.create_task``)."""
        try:
            value: T = await self._instance.hook_next(self._op)
        except HookClosed:
            raise WorkflowInstance.hook_gone(self._op) from None
        return value

    def __await__(self) -> Generator[Any, None, T]:
        return self.receive().__await__()

    def __aiter__(self) -> Hook[T]:
        return self

    async def __anext__(self) -> T:
        try:
            value: T = await self._instance.hook_next(self._op)
        except HookClosed:
            raise StopAsyncIteration from None
        return value

    @property
    def url(self) -> str:
        """A webhook's public URL: the server's base URL + ``/.well-known/workflow/v1/webhook/``
        + the token. The base URL is the HTTP app's (``worldflow serve``, ``create_app(
        base_url=)``) or ``$WORLDFLOW_BASE_URL``; without one → ``ConfigurationError``."""
        if not self.is_webhook:
            raise AttributeError("a hook made by create_hook() has no URL; use create_webhook()")
        return webhook_url(self.token)

    def dispose(self) -> None:
        """Stop receiving: the token is released (``hook_disposed``); iteration ends."""
        self._instance.hook_dispose(self._op)

    def __enter__(self) -> Hook[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def __repr__(self) -> str:
        kind = "webhook" if self.is_webhook else "hook"
        return f"<{kind} {self.token!r}>"


def create_hook(token: str | None = None, metadata: Any = None) -> Hook[Any]:
    """Create a hook that ``resume_hook(token, payload)`` sends payloads to.

    Args:
        token: The hook's token; unique among live hooks of the world. Default: a token
            derived from the run (the same on every replay).
        metadata: Any encodable value stored with the hook (shown by the inspector, returned
            by ``get_hook_by_token``).
    """
    instance = require_instance("worldflow.create_hook()")
    return Hook(instance, instance.create_hook(token, metadata, is_webhook=False))


def create_webhook(
    *, respond_with: WebhookResponse | Literal["manual"] | None = None, metadata: Any = None
) -> Hook[WebhookRequest]:
    """Create a hook whose payloads are HTTP requests sent to its webhook URL (``hook.url``).

    Args:
        respond_with: What the caller gets back: default ``202 Accepted`` with an empty body;
            a :class:`WebhookResponse` for every request; or ``"manual"``: the caller waits
            until a step calls ``await request.respond_with(WebhookResponse(...))`` (504 after
            the server's timeout, 502 at once if the run ends without answering).
        metadata: Any encodable value stored with the hook.

    The token is generated (webhook URLs should not be guessable from your data).
    """
    instance = require_instance("worldflow.create_webhook()")
    stored = webhook_metadata(respond_with, metadata)
    return Hook(instance, instance.create_hook(None, stored, is_webhook=True))


def wait_for_event(name: str, timeout: Duration | None = None) -> Coroutine[Any, Any, Any]:
    """Wait for the next named event raised for this run (``Engine.raise_event``).

    An event raised before the workflow waits for it is kept for the next wait. With a
    ``timeout`` (seconds, ``"7d"``, ``timedelta``) a ``TimeoutError`` is raised if no event
    arrives in time.
    """
    return require_instance("worldflow.wait_for_event()").wait_for_event(name, timeout)


def get_state() -> Any:
    """The workflow's state: the run's ``initial_state`` or the last :func:`set_state` value.

    The value is a copy: change it and call :func:`set_state` to record the change.
    """
    return require_instance("worldflow.get_state()").get_state()


def set_state(value: Any) -> None:
    """Replace the workflow's state; recorded in the log and visible to clients."""
    require_instance("worldflow.set_state()").set_state(value)


def now() -> datetime:
    """The workflow's current time (UTC): the time of the last event it received.

    Use it instead of ``datetime.now()``, which would differ on replay.
    """
    return require_instance("worldflow.now()").now()


def random() -> float:
    """A random float in [0, 1) that is the same on replay (seeded by the run id)."""
    return require_instance("worldflow.random()").random()


def uuid4() -> _uuid.UUID:
    """A random UUID that is the same on replay (seeded by the run id)."""
    return require_instance("worldflow.uuid4()").uuid4()


def is_replaying() -> bool:
    """Whether the body is re-running code already run before a restart (from the log)."""
    return require_instance("worldflow.is_replaying()").is_replaying()


def _patch_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 512 or not name.isprintable():
        raise ValueError(
            f"{what} takes a patch name: a non-empty printable str of at most 512 characters "
            f"that stays the same for as long as runs recorded with it exist, not {name!r:.60}"
        )
    return name


def patched(name: str) -> bool:
    """Whether this run takes the new branch of a change to the workflow (Temporal's
    ``patched``): change a workflow that has runs in flight without breaking their replay.

    ::

        if patched("charge-with-tax"):
            amount = await add_tax(amount)     # new runs
        await charge(amount)                  # runs recorded before the change skip add_tax

    A run that gets here live records a ``patch_marked`` event and takes the new branch; a
    replay of a log that has that marker takes it again, and a replay of a log without it
    (recorded by the old code, or stalled on the change) takes the old one. The answer is
    decided once per run and name, at the first call, and every later call of the same name
    in the run (another task of a ``gather``, the next loop iteration) gets it too: it does
    not depend on which task gets there first. Once no run recorded without the marker is
    left, replace the call by :func:`deprecate_patch`, and later remove that too.
    """
    instance = require_instance("worldflow.patched()")
    return instance.patched(_patch_name(name, "patched()"))


def deprecate_patch(name: str) -> None:
    """Mark patch ``name``'s old branch as gone: keep only the new code after it.

    Runs recorded with ``patched(name)`` (with the marker) replay; a new run still records the
    marker, so code that is rolled back to ``patched(name)`` replays it too. A run recorded
    without the marker would take the new code on replay: use it once none is in flight.
    """
    instance = require_instance("worldflow.deprecate_patch()")
    instance.deprecate_patch(_patch_name(name, "deprecate_patch()"))


def get_workflow_metadata() -> WorkflowMetadata:
    """The workflow name, run id, start time, resource id and metadata of the current run.

    Works in a workflow body and in a step (for the run the step belongs to).
    """
    instance = current_instance()
    if instance is not None:
        return instance.metadata()
    in_step = step_workflow_metadata()
    if in_step is not None:
        return in_step
    return require_instance("worldflow.get_workflow_metadata() (or call it in a step)").metadata()


class WorkflowStreamHandle(msgspec.Struct, frozen=True, kw_only=True):
    """A reference to one of the run's streams, made in a workflow body and passed to steps.

    Writing happens in steps (the body cannot do I/O)::

        out = get_writable()          # in the workflow body
        await generate(prompt, out)   # a step: ``await out.write(token)``

    Attributes:
        run_id: The run whose stream this is.
        namespace: The stream's namespace, or ``None`` for the default stream.
    """

    run_id: str
    namespace: str | None = None

    def _writer(self, what: str) -> Any:
        if in_workflow():
            raise DeterminismViolationError(
                f"{what} cannot be called in a workflow body: pass this handle to a step "
                "and write there (writing is I/O, which only steps may do)"
            )
        return get_writable(self.namespace)

    async def write(self, value: Any) -> int:
        """Append ``value`` to the stream (in a step); return the stream's new length."""
        length: int = await self._writer("stream.write()").write(value)
        return length

    async def close(self) -> None:
        """Close the stream (in a step): live readers end after its last chunk."""
        await self._writer("stream.close()").close()


def workflow_writable(namespace: str | None = None) -> WorkflowStreamHandle:
    """``get_writable()`` in a workflow body: a handle to pass to a step."""
    instance = require_instance("get_writable() in a workflow")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError(f"a stream namespace must be a non-empty str, not {namespace!r}")
    return WorkflowStreamHandle(run_id=instance.run_id, namespace=namespace)


class _ReplaySilence(logging.Filter):
    """Drops records logged while a body replays; tags the rest with the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        instance = current_instance()
        if instance is None:
            return True
        if instance.is_replaying():
            return False
        record.run_id = instance.run_id
        record.workflow_name = instance.definition.name
        return True


logger = logging.getLogger("worldflow.workflow")
"""A logger for workflow bodies that stays silent while the body replays.

Records logged live carry ``run_id`` and ``workflow_name`` attributes for formatters.
"""
logger.addFilter(_ReplaySilence())
