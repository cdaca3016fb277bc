"""The private, deterministic event loop a workflow body runs on.

A :class:`WorkflowLoop` has a FIFO queue of ready callbacks and nothing else: no selector, no
threads, no wall clock. The workflow instance drives it synchronously with
:meth:`WorkflowLoop.run_until_idle` from inside whatever code calls it (usually a coroutine on
the host asyncio loop): for the length of that call the workflow loop is the thread's running
loop, so ``asyncio.get_running_loop()``, ``create_task``, ``gather``, ``wait``, ``TaskGroup``
and ``timeout`` inside the body all use it, and nothing of the body lands on the host loop.

Time is the workflow's clock (the ``created_at`` of the last event delivered), and
``call_at`` / ``call_later`` become durable timers: the instance records a wait and runs the
callback when the log says the wait completed. That is how ``asyncio.timeout`` and
``asyncio.wait_for`` work in a body and replay identically. What cannot be replayed raises
:class:`~worldflow.DeterminismViolationError` naming the replacement: ``asyncio.sleep`` (use
``worldflow.sleep``), executors and threads, sockets, subprocesses, signals (use a step).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import weakref
from asyncio import events, futures
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar, TypeVarTuple

from worldflow.errors import DeterminismViolationError

__all__ = ["WorkflowLoop"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")
_log = logging.getLogger("worldflow.loop")

_USE_A_STEP = (
    "Workflow bodies only orchestrate: put I/O, threads and blocking work in an @step "
    "function and await it from the workflow."
)


class _BodyTask(asyncio.Task[_T]):
    """A body task whose hash is its creation number, not its memory address.

    ``asyncio.wait`` returns *sets* of tasks; a body that iterates them (to cancel the losers,
    say) must see the same order on every replay, and a set's order follows its members'
    hashes. Creation order is the same on every replay; memory addresses are not.
    """

    creation_number = 0

    def __hash__(self) -> int:
        return self.creation_number


class _BodyFuture(asyncio.Future[_T]):
    """A body future hashed by creation number, like :class:`_BodyTask`.

    It can also tell its owner when it is cancelled (:meth:`WorkflowLoop.on_cancel`), at
    once and without a done-callback: the instance watches every operation's future, and
    a callback per future cost a scheduled handle per step.
    """

    creation_number = 0
    _on_cancel: Callable[[Any, Any], None] | None = None
    watched: Any = None

    def __hash__(self) -> int:
        return self.creation_number

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        if self._on_cancel is not None:
            self._on_cancel(self.watched, self)
        return True


def _closed_clock() -> float:
    raise RuntimeError("the workflow loop is closed (the run finished or was evicted)")


def _ignore_timer(handle: asyncio.TimerHandle) -> None:
    """A released loop's timer callbacks: nothing owns its timers any more."""


class _Handle(asyncio.Handle):
    """``asyncio.Handle`` made without asking the loop for its debug mode (always off here):
    one Python call less for every callback the body schedules."""

    __slots__ = ()

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        self._context = contextvars.copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None


class WorkflowLoop(asyncio.AbstractEventLoop):
    """A deterministic asyncio event loop driven one idle point at a time.

    Args:
        clock: Returns the workflow's current time in seconds since the epoch.
        on_timer: Called with each timer handle whose time is in the future; the owner
            records a durable wait and later calls :meth:`fire_timer`.
        on_timer_cancelled: Called when such a handle is cancelled before it fired.
        owner: The object that drives this loop (the workflow instance); primitives find it
            through the running loop.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        on_timer: Callable[[asyncio.TimerHandle], None],
        on_timer_cancelled: Callable[[asyncio.TimerHandle], None],
        owner: object = None,
    ) -> None:
        self._clock = clock
        self._on_timer = on_timer
        self._on_timer_cancelled = on_timer_cancelled
        self.owner = owner
        self._ready: deque[asyncio.Handle] = deque()
        self._closed = False
        self._running = False
        self._debug = False
        self._exception_handler: Any = None
        self._task_factory: Any = None
        self._asyncgens: weakref.WeakSet[Any] | None = None  # made with the first one
        # The body's tasks, held until shutdown cancels them (done ones are pruned as the
        # list grows). A plain list: a WeakSet costs more to fill and walk than a body's
        # whole step, and an abandoned task is cancelled at shutdown rather than collected.
        self._tasks: list[asyncio.Task[Any]] = []
        self._tasks_limit = 64
        self._hooks: tuple[Any, Any] = (self._asyncgen_firstiter, self._asyncgen_finalizer)
        self._created = 0  # tasks and futures made so far: their deterministic hashes
        self.violation: DeterminismViolationError | None = None
        """The first determinism violation seen: the owner fails the run with it."""

    # -- driving -----------------------------------------------------------------------------

    def run_until_idle(self) -> None:
        """Run ready callbacks (including those they schedule) until none is left.

        The loop is the running loop of this thread for the duration, and the previous
        running loop (the host's, or none) is restored afterwards, even on error.
        """
        if self._closed:
            raise RuntimeError("the workflow loop is closed")
        if self._running:
            raise RuntimeError("the workflow loop is already running (re-entrant drive)")
        host = events._get_running_loop()
        hooks = sys.get_asyncgen_hooks()
        events._set_running_loop(self)
        sys.set_asyncgen_hooks(*self._hooks)
        self._running = True
        try:
            ready = self._ready
            while ready:
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            self._running = False
            sys.set_asyncgen_hooks(*hooks)
            events._set_running_loop(host)

    def has_ready(self) -> bool:
        """Whether callbacks are waiting to run."""
        return bool(self._ready)

    def fire_timer(self, handle: asyncio.TimerHandle) -> None:
        """Schedule a durable timer's callback (its wait completed in the log)."""
        if not handle.cancelled() and not self._closed:
            self._ready.append(handle)

    def shutdown(self, *, rounds: int = 50) -> None:
        """Cancel every task and close every async generator of the body, then close.

        A body that keeps catching ``CancelledError`` gets ``rounds`` chances; what is left
        after that is dropped without the "Task was destroyed but it is pending" warning.
        """
        if self._closed:
            return
        # The loop's own task set, not asyncio.all_tasks(self): that one walks every task of
        # the process, which made closing an instance O(all tasks) (quadratic in runs).
        for _ in range(rounds):
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            self.run_until_idle()
        if self._asyncgens:
            for agen in list(self._asyncgens):
                self._asyncgens.discard(agen)
                self._ready.append(asyncio.Handle(self._start_aclose, (agen,), self, None))
        if self._ready:
            self.run_until_idle()
        for task in list(self._tasks):
            if not task.done():
                task._log_destroy_pending = False  # type: ignore[attr-defined]
                task.get_coro().close()
        # A failed fire-and-forget task of a body that is gone would otherwise be reported
        # whenever the garbage collector gets to it (at a random point of other code).
        for task in list(self._tasks):
            if task.done() and not task.cancelled() and task.exception() is not None:
                _log.debug("a task of the closed workflow body had failed: %r", task)
        self.close()

    def release(self) -> None:
        """Drop what ties the closed loop to its owner and its tasks (each a reference cycle:
        the owner's bound methods, the tasks that point back at the loop), so a dropped
        instance is freed by reference counting at once instead of waiting, with all it
        holds, for the cyclic garbage collector's oldest generation."""
        if not self._closed:
            raise RuntimeError("release() is for a closed workflow loop")
        self.owner = None
        self._clock = _closed_clock
        self._on_timer = self._on_timer_cancelled = _ignore_timer
        self._hooks = (None, None)
        self._tasks = []
        self._asyncgens = None
        self._exception_handler = self._task_factory = None

    def _start_aclose(self, agen: Any) -> None:
        self.create_task(agen.aclose())

    # -- scheduling --------------------------------------------------------------------------

    def time(self) -> float:
        """The workflow's clock in seconds since the epoch (deterministic)."""
        return self._clock()

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """Schedule ``callback`` at the end of the ready queue (FIFO).

        On a closed loop the callback is dropped: a late event may still resolve a future of
        a body that is gone, and nothing will ever run its callbacks.
        """
        handle = _Handle(callback, args, self, context)
        if self._closed:
            handle.cancel()
        else:
            self._ready.append(handle)
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """A durable timer at workflow time ``when`` (``asyncio.sleep`` is refused)."""
        self._check_closed()
        if callback is futures._set_result_unless_cancelled:  # type: ignore[attr-defined]
            self._violate(
                "asyncio.sleep() with a delay cannot be used in a workflow body: its timer "
                "would not survive a restart. Use `await worldflow.sleep(seconds or "
                '"1h30m")`, a durable timer recorded in the run\'s log.'
            )
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        if when <= self.time():
            self._ready.append(handle)
        else:
            handle._scheduled = True  # type: ignore[attr-defined]
            self._on_timer(handle)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """A durable timer ``delay`` seconds of workflow time from now."""
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # Called by TimerHandle.cancel(); a handle already run or never armed is ignored by
        # the owner, which knows which timers are still waiting.
        self._on_timer_cancelled(handle)

    def create_future(self) -> asyncio.Future[Any]:
        """A future bound to this loop, hashed by creation order (see :class:`_BodyTask`)."""
        self._created += 1
        future: _BodyFuture[Any] = _BodyFuture(loop=self)
        future.creation_number = self._created
        return future

    def on_cancel(
        self, future: asyncio.Future[Any], watched: Any, callback: Callable[[Any, Any], None]
    ) -> None:
        """Call ``callback(watched, future)`` as soon as ``future`` (made by
        :meth:`create_future`) is cancelled."""
        if isinstance(future, _BodyFuture):
            future.watched = watched
            future._on_cancel = callback
        else:  # pragma: no cover - every future of the body comes from create_future

            def done(f: asyncio.Future[Any]) -> None:
                if f.cancelled():
                    callback(watched, f)

            future.add_done_callback(done)

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        """A task of the workflow body, run by this loop."""
        if self._closed:
            coro.close()
            self._check_closed()
        if self._task_factory is not None:
            made: asyncio.Task[_T] = self._task_factory(self, coro)
            if name is not None:
                made.set_name(name)
            self._keep(made)
            return made
        self._created += 1
        task = _BodyTask(coro, loop=self, name=name, context=context)
        task.creation_number = self._created
        self._keep(task)
        # A body task waits, by design, on events that may come much later or never (an
        # evicted instance is dropped while it waits): that is not asyncio's "destroyed but
        # pending" bug, so do not log it.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        return task

    def _keep(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        tasks.append(task)
        if len(tasks) > self._tasks_limit:
            tasks[:] = [t for t in tasks if not t.done()]
            self._tasks_limit = max(64, 2 * len(tasks))

    def set_task_factory(self, factory: Any) -> None:
        """Install a task factory (as on any asyncio loop)."""
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        """The task factory, or ``None``."""
        return self._task_factory

    # -- state -------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while :meth:`run_until_idle` runs."""
        return self._running

    def is_closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self) -> None:
        """Drop every callback; the loop cannot be used again."""
        self._closed = True
        self._ready.clear()

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("the workflow loop is closed (the run finished or was evicted)")

    def get_debug(self) -> bool:
        """Debug mode is off: it would read the wall clock."""
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        """Accepted for compatibility; debug mode stays off."""

    async def shutdown_asyncgens(self) -> None:
        """Async generators are closed by :meth:`shutdown`."""

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """There is no executor."""

    def _asyncgen_firstiter(self, agen: Any) -> None:
        if self._asyncgens is None:
            self._asyncgens = weakref.WeakSet()
        self._asyncgens.add(agen)

    def _asyncgen_finalizer(self, agen: Any) -> None:
        if self._asyncgens is not None:
            self._asyncgens.discard(agen)
        if not self._closed:
            self.call_soon(self._start_aclose, agen)

    # -- errors ------------------------------------------------------------------------------

    def set_exception_handler(self, handler: Any) -> None:
        """Install an exception handler for callbacks that raise."""
        self._exception_handler = handler

    def get_exception_handler(self) -> Any:
        """The installed exception handler, or ``None``."""
        return self._exception_handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log what went wrong in a callback of the body."""
        exc = context.get("exception")
        _log.error("%s", context.get("message", "error in a workflow loop callback"), exc_info=exc)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Report an error raised by a callback (asyncio's hook for it)."""
        exc = context.get("exception")
        if isinstance(exc, DeterminismViolationError) and self.violation is None:
            self.violation = exc
        if self._exception_handler is None:
            self.default_exception_handler(context)
        else:
            self._exception_handler(self, context)

    def _violate(self, message: str) -> NoReturn:
        error = DeterminismViolationError(message)
        if self.violation is None:
            self.violation = error
        raise error

    # -- what a workflow body may not do -----------------------------------------------------

    def run_forever(self) -> None:
        """Refused: the workflow instance drives this loop."""
        raise RuntimeError("the workflow loop is driven by its workflow instance")

    def run_until_complete(self, future: Any) -> Any:
        """Refused: the workflow instance drives this loop."""
        raise RuntimeError("the workflow loop is driven by its workflow instance")

    def stop(self) -> None:
        """Refused: the workflow instance drives this loop."""
        raise RuntimeError("the workflow loop is driven by its workflow instance")

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Refused: threads cannot feed a workflow body."""
        self._violate(f"threads cannot schedule work in a workflow body. {_USE_A_STEP}")

    def run_in_executor(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Refused: use a step (sync steps run in a worker thread)."""
        self._violate(
            "run_in_executor() / asyncio.to_thread() cannot be used in a workflow body: "
            "the thread's result would not be recorded. Make the function an @step (sync "
            "steps run in a worker thread) and await it."
        )

    def set_default_executor(self, executor: Any) -> None:
        """Refused: there is no executor."""
        self._violate(f"a workflow loop has no executor. {_USE_A_STEP}")

    def _no_io(self, what: str) -> NoReturn:
        self._violate(f"{what} cannot be used in a workflow body. {_USE_A_STEP}")

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: network I/O belongs in a step."""
        self._no_io("DNS lookups (getaddrinfo)")

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: network I/O belongs in a step."""
        self._no_io("DNS lookups (getnameinfo)")

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: network I/O belongs in a step."""
        self._no_io("network connections")

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: servers belong outside workflows."""
        self._no_io("servers")

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("unix socket connections")

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: servers belong outside workflows."""
        self._no_io("servers")

    async def connect_accepted_socket(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("datagram sockets")

    async def sendfile(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sendfile")

    async def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("TLS")

    async def connect_read_pipe(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("pipes")

    async def connect_write_pipe(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("pipes")

    async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: subprocesses belong in a step."""
        self._no_io("subprocesses")

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: subprocesses belong in a step."""
        self._no_io("subprocesses")

    def add_reader(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Refused: I/O belongs in a step."""
        self._no_io("file descriptor readers")

    def remove_reader(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("file descriptor readers")

    def add_writer(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Refused: I/O belongs in a step."""
        self._no_io("file descriptor writers")

    def remove_writer(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("file descriptor writers")

    async def sock_recv(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_recv_into(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_recvfrom(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_recvfrom_into(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_sendall(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_sendto(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_connect(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_accept(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    async def sock_sendfile(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: I/O belongs in a step."""
        self._no_io("sockets")

    def add_signal_handler(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Refused: signals belong to the process, not to a workflow."""
        self._violate("signal handlers cannot be installed from a workflow body.")

    def remove_signal_handler(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: signals belong to the process, not to a workflow."""
        self._violate("signal handlers cannot be removed from a workflow body.")
