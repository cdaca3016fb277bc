"""What a step can ask about itself while it runs: metadata, the run's stream, suspension.

The engine sets a :class:`StepContext` in a context variable around each attempt, so these
functions work anywhere in the step's call tree, including a sync step running in a worker
thread (``asyncio.to_thread`` copies the context).

``suspend(payload)`` raises :class:`StepSuspension`, a :class:`BaseException`: it is control
flow for the engine, and a step's own ``except Exception:`` must not swallow it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from worldflow import _serde
from worldflow._replay.current import in_workflow
from worldflow.worlds import NULL, Payload

if TYPE_CHECKING:
    from worldflow._primitives import WorkflowStreamHandle
    from worldflow._replay.instance import WorkflowMetadata
    from worldflow.worlds import World

__all__ = [
    "DEFAULT_STREAM",
    "StepContext",
    "StepMetadata",
    "StepSuspension",
    "StreamWriter",
    "current_step",
    "get_resume_data",
    "get_step_metadata",
    "get_writable",
    "step_workflow_metadata",
    "stream_name",
    "suspend",
]

DEFAULT_STREAM = "default"
"""The stream that ``get_writable()`` and ``Run.readable()`` use without a namespace."""


def stream_name(namespace: str | None) -> str:
    """The world stream name for a namespace (``None`` is the default stream)."""
    if namespace is None:
        return DEFAULT_STREAM
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"a stream namespace must be a non-empty str, not {namespace!r}")
    return namespace


class StepMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """Who the running step is; ``step_id`` is stable across attempts (an idempotency key).

    Attributes:
        run_id: The run the step belongs to.
        step_id: The step call's correlation id: the same on every attempt and after a crash.
        step_name: The step's registered name.
        attempt: The attempt number, from 1, counted as ``max_retries`` counts: attempts
            lost to a crash or cut short by a stopping engine are not counted.
        workflow_name: The name of the run's workflow.
        cancelled: The engine gave up on this attempt (it timed out, its run was cancelled,
            the engine is stopping). A ``def`` step runs in a thread, which cannot be
            interrupted: it keeps its concurrency slot until it returns, and should call
            ``get_step_metadata()`` now and then and return early once this is true.
    """

    run_id: str
    step_id: str
    step_name: str
    attempt: int
    workflow_name: str
    cancelled: bool = False


class StepSuspension(BaseException):
    """Raised by :func:`suspend`: ends the attempt and parks the step until ``resume_step``.

    Derives from :class:`BaseException` so a step's ``except Exception:`` lets it through.
    """

    def __init__(self, payload: Payload) -> None:
        super().__init__("step suspended")
        self.payload = payload


class StepContext:
    """The engine's view of one running attempt (internal; read through the functions).

    ``metadata`` is made when first asked for: most steps never call
    ``get_step_metadata()``, and an attempt is the engine's hottest path.
    """

    __slots__ = (
        "_metadata",
        "attempt",
        "cancelled",
        "loop",
        "resume_data",
        "run_id",
        "services",
        "step_id",
        "step_name",
        "workflow",
        "world",
    )

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        step_name: str,
        attempt: int,
        workflow: WorkflowMetadata,
        world: World,
        loop: asyncio.AbstractEventLoop,
        resume_data: Payload = NULL,
        services: Any = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.step_name = step_name
        self.attempt = attempt
        self.workflow = workflow
        self.world = world
        self.loop = loop
        self.resume_data = resume_data
        self.services = services  # what the engine's builtin steps need (start a child)
        self._metadata: StepMetadata | None = None
        self.cancelled = False  # set by the engine; read from the step's thread

    def cancel(self) -> None:
        """The engine gave up on the attempt (``StepMetadata.cancelled`` says so from now)."""
        self.cancelled = True
        self._metadata = None

    @property
    def metadata(self) -> StepMetadata:
        """Who the running step is (``get_step_metadata()``)."""
        metadata = self._metadata
        if metadata is None or metadata.cancelled is not self.cancelled:
            metadata = self._metadata = StepMetadata(
                run_id=self.run_id,
                step_id=self.step_id,
                step_name=self.step_name,
                attempt=self.attempt,
                workflow_name=self.workflow.workflow_name,
                cancelled=self.cancelled,
            )
        return metadata


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "worldflow_step", default=None
)


def current_step() -> StepContext | None:
    """The running step's context, or ``None`` outside a step."""
    return _current.get()


set_current_step: Callable[[StepContext | None], contextvars.Token[StepContext | None]]
set_current_step = _current.set
"""Install a context as the running step (engine use); reset with the returned token. The
context variable's own method: one Python call less on every attempt."""

reset_current_step: Callable[[contextvars.Token[StepContext | None]], None] = _current.reset
"""Undo :func:`set_current_step`."""


def _require(fn: str) -> StepContext:
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError(
            f"{fn}() can only be called while a step runs (inside an @step function); "
            "in a workflow body use worldflow.get_workflow_metadata(), and pass data to steps "
            "as arguments"
        )
    return ctx


def get_step_metadata() -> StepMetadata:
    """The running step's run id, step id, name and attempt number.

    ``step_id`` stays the same across retries and crashes, so it makes a good idempotency key::

        @step
        async def charge(order_id: str) -> str:
            key = get_step_metadata().step_id
            return await payments.charge(order_id, idempotency_key=key)
    """
    return _require("get_step_metadata").metadata


def step_workflow_metadata() -> WorkflowMetadata | None:
    """The metadata of the run the running step belongs to, or ``None`` outside a step.

    ``worldflow.get_workflow_metadata()`` returns it when called inside a step.
    """
    ctx = _current.get()
    return None if ctx is None else ctx.workflow


def get_resume_data() -> Any:
    """The data ``resume_step`` sent to this step after it suspended, or ``None``.

    A step that suspends for input is written as "ask, or use the answer"::

        @step
        async def approve(doc: str) -> bool:
            answer = get_resume_data()
            if answer is None:
                await suspend({"question": f"approve {doc}?"})
            return bool(answer["ok"])
    """
    return _serde.decode(_require("get_resume_data").resume_data)


def suspend(payload: Any = None) -> NoReturn:
    """End this attempt and park the step until ``resume_step(run_id, step, data)``.

    The run records ``step_suspended`` with ``payload`` (shown to whoever resumes it); after
    ``resume_step`` the step runs again from the top and :func:`get_resume_data` returns the
    data. Works as ``await suspend(x)`` in async steps and ``suspend(x)`` in sync ones.
    """
    _require("suspend")
    raise StepSuspension(_serde.encode(payload))


class StreamWriter:
    """Writes values to one of the run's streams; readers get them from ``Run.readable()``.

    Each value is encoded like any payload and stored as one chunk. From a sync step (a worker
    thread) use :meth:`write_sync`.
    """

    def __init__(self, world: World, run_id: str, name: str, loop: asyncio.AbstractEventLoop):
        self._world = world
        self._loop = loop
        self.run_id = run_id
        self.name = name

    async def write(self, value: Any) -> int:
        """Append ``value`` to the stream; return the stream's new length."""
        return await self._world.write_stream(self.run_id, self.name, [_serde.encode_bytes(value)])

    async def write_many(self, values: list[Any]) -> int:
        """Append several values as one write; return the stream's new length."""
        chunks = [_serde.encode_bytes(v) for v in values]
        return await self._world.write_stream(self.run_id, self.name, chunks)

    async def close(self) -> None:
        """Mark the stream finished: live readers end after its last chunk."""
        await self._world.close_stream(self.run_id, self.name)

    def _call_from_thread(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise RuntimeError(
                "write_sync()/close_sync() block and cannot run on the event loop; "
                "in an async step use `await writer.write(value)`"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def write_sync(self, value: Any) -> int:
        """Like :meth:`write`, from a sync step running in a worker thread."""
        result: int = self._call_from_thread(self.write(value))
        return result

    def close_sync(self) -> None:
        """Like :meth:`close`, from a sync step running in a worker thread."""
        self._call_from_thread(self.close())


def get_writable(namespace: str | None = None) -> StreamWriter | WorkflowStreamHandle:
    """A writer for the run's stream (``namespace`` picks one of several named streams).

    In a step it writes directly::

        @step
        async def generate(prompt: str) -> str:
            out = get_writable()
            async for token in llm(prompt):
                await out.write(token)
            return "done"

    In a workflow body it returns a handle to pass to a step (writing is I/O, which only steps
    do); clients read the stream with ``Run.readable(namespace)``.
    """
    if in_workflow():
        from worldflow._primitives import workflow_writable

        return workflow_writable(namespace)
    ctx = _require("get_writable")
    return StreamWriter(ctx.world, ctx.run_id, stream_name(namespace), ctx.loop)
