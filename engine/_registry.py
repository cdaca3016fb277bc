"""``@workflow`` and ``@step``: decorators, definitions, and the registry that finds them by name.

A decorated function keeps its signature for type checkers (``await charge(order_id, 1999)``
has the step's return type) and gets a stable registered name, ``module:qualname`` unless
``name=`` says otherwise. What a call does depends on where it runs:

* inside a workflow body, calling a step records a durable step operation and awaits its
  recorded result; calling a workflow starts a child run and awaits its outcome;
* anywhere else (a plain test, another step) it just calls the function.

Inputs are encoded from the *bound* arguments, so ``charge("o-1", 1999)`` and
``charge(order_id="o-1", cents=1999)`` record the same input (and replay the same).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from types import CodeType
from typing import Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from worldflow._call_arguments import (
    NotPlain,
    decode_arguments,
    encode_arguments,
    parameters,
    plain_names,
)
from worldflow._cron import CronSchedule
from worldflow._durations import Duration, parse_duration
from worldflow._limits import Concurrency, FlowLimits, RateLimit, flow_limits
from worldflow._replay.current import current_instance
from worldflow.errors import (
    ConfigurationError,
    StepNotRegisteredError,
    WorkflowNotRegisteredError,
)
from worldflow.worlds import ParameterInfo, Payload

__all__ = [
    "BUILTIN_PREFIX",
    "Backoff",
    "ParameterInfo",
    "Registry",
    "StepDefinition",
    "StepFunction",
    "StepOptions",
    "WorkflowDefinition",
    "WorkflowFunction",
    "step",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

BUILTIN_PREFIX = "worldflow."
"""Registered names starting with this belong to worldflow's own builtin steps."""


# -- options -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long to wait before retrying a failed step attempt: exponential, capped.

    Args:
        initial: The delay after the first failed attempt.
        factor: Each later delay is the previous one times ``factor`` (1 = constant).
        maximum: No delay is longer than this.
    """

    initial: timedelta = timedelta(seconds=1)
    factor: float = 2.0
    maximum: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"Backoff(factor=...) must be >= 1, got {self.factor!r}")
        if self.maximum < self.initial:
            raise ValueError("Backoff(maximum=...) must not be shorter than initial")

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (counted from 1)."""
        seconds = self.initial.total_seconds() * self.factor ** max(0, attempt - 1)
        return min(self.maximum, timedelta(seconds=min(seconds, 1e9)))

    @classmethod
    def of(cls, value: Backoff | Duration | None) -> Backoff:
        """Read a ``backoff=`` option: a :class:`Backoff`, or a constant delay (``"5s"``)."""
        if value is None:
            return cls()
        if isinstance(value, Backoff):
            return value
        delay = parse_duration(value)
        return cls(initial=delay, factor=1.0, maximum=delay)


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """How the runtime runs a step: retries, backoff between them, timeout, flow control.

    Attributes:
        max_retries: Retries after the first attempt (0 = run once). ``FatalError`` is never
            retried.
        backoff: The delay between attempts, unless ``RetryableError(retry_after=)`` says.
        timeout: Each attempt's time limit, or ``None`` for none; an attempt over it fails
            (and is retried like any failure).
        concurrency: At most this many attempts of this step run at once across every
            engine on the world (held by the world), or ``None`` for no limit.
        rate_limit: At most this many attempts start per period across every engine.
        max_lost_attempts: Attempts lost to crashes (the process died mid-attempt) the step
            may have before it fails for good; they do not count against ``max_retries``,
            and neither do attempts cut short by an engine that stopped cleanly.
    """

    max_retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: timedelta | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    max_lost_attempts: int = 3


# -- definitions -------------------------------------------------------------------------------


class _Definition:
    """What step and workflow definitions share: a named function and its recorded inputs.

    A call's input is recorded as its bound arguments (``{parameter: value}``), so
    ``f(21)`` and ``f(amount=21)`` record the same bytes and replay compares them equal.
    """

    kind: ClassVar[str]
    name: str
    fn: Callable[..., Any]
    signature: inspect.Signature

    @property
    def doc(self) -> str | None:
        """The function's docstring, cleaned up, or ``None``."""
        return inspect.getdoc(self.fn)

    @property
    def parameters(self) -> tuple[ParameterInfo, ...]:
        """The function's parameters."""
        return parameters(self.signature)

    @functools.cached_property
    def _names(self) -> tuple[str, ...] | NotPlain:
        return plain_names(self.signature)

    def _what(self) -> str:
        return f"{self.kind} {self.name!r}"

    def encode_input(self, *args: Any, **kwargs: Any) -> Payload:
        """The recorded input of a call ``fn(*args, **kwargs)``."""
        return encode_arguments(self.signature, self._what, args, kwargs, self._names)

    def decode_input(self, payload: Payload | bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` of a recorded input; call ``fn(*args, **kwargs)``."""
        return decode_arguments(self.signature, self._what, payload, self._names)


@dataclass(frozen=True, eq=False)
class StepDefinition(_Definition):
    """A registered step: its name, function, options and signature.

    Attributes:
        name: The stable registered name (``module:qualname`` unless ``name=`` was given).
        fn: The undecorated function (``async def`` or plain ``def``).
        options: Retries, backoff, timeout and flow control.
        signature: The function's signature (inputs are bound to it).
        is_async: Whether ``fn`` is a coroutine function (plain functions run in a thread).
        limits: The world-held limits of its attempts (from ``options``), or ``None``.
    """

    kind: ClassVar[str] = "step"
    name: str
    fn: Callable[..., Any]
    options: StepOptions
    signature: inspect.Signature
    is_async: bool
    limits: FlowLimits | None = None


@dataclass(frozen=True, eq=False)
class WorkflowDefinition(_Definition):
    """A registered workflow: its name, body function and signature.

    Attributes:
        name: The stable registered name (``module:qualname`` unless ``name=`` was given).
        fn: The undecorated ``async def`` body.
        signature: The body's signature (the run's input is bound to it).
        schedule: When it runs by itself (``@workflow(schedule=...)``), or ``None``.
        limits: Its runs' world-held concurrency and rate limits, or ``None``.
    """

    kind: ClassVar[str] = "workflow"
    name: str
    fn: Callable[..., Coroutine[Any, Any, Any]]
    signature: inspect.Signature
    schedule: CronSchedule | None = None
    limits: FlowLimits | None = None

    @property
    def step_names(self) -> list[str]:
        """Names of the steps the body refers to directly (found in its code; best effort).

        Steps reached only through helpers or attributes (``mod.charge``) are not listed.
        """
        return sorted({d.name for d in _referenced(self.fn, StepFunction)})


def _referenced(fn: Callable[..., Any], kind: type[Any]) -> list[Any]:
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    scope: dict[str, Any] = dict(getattr(fn, "__globals__", {}))
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            scope[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    names: set[str] = set()
    stack: list[CodeType] = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        names.update(current.co_freevars)
        stack.extend(c for c in current.co_consts if isinstance(c, CodeType))
    return [scope[n].definition for n in sorted(names) if isinstance(scope.get(n), kind)]


# -- decorated callables -----------------------------------------------------------------------


async def _run_plain(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    return fn(*args, **kwargs)


D = TypeVar("D", bound=_Definition)


class _Decorated(Generic[D]):
    """What the decorators share: the definition, the function's metadata, ``name``, ``fn``
    and the repr; each subclass says what a call does in and out of a workflow body."""

    __name__: str
    __qualname__: str
    definition: D

    def __init__(self, definition: D) -> None:
        self.definition = definition
        # Each subclass is callable (its own ``__call__``); update_wrapper wants a callable.
        functools.update_wrapper(cast("Callable[..., Any]", self), definition.fn)

    @property
    def name(self) -> str:
        """The registered name."""
        return self.definition.name

    def __repr__(self) -> str:
        return f"<{self.definition.kind} {self.definition.name}>"


class StepFunction(_Decorated[StepDefinition], Generic[P, R]):
    """What ``@step`` returns: the function, made durable when called from a workflow body.

    Inside a workflow body ``await charge(...)`` records a step operation and returns its
    recorded result. Anywhere else the call runs the function: an async step returns its
    coroutine; a sync step returns a coroutine that calls it (``charge.fn(...)`` calls a sync
    step directly).
    """

    @property
    def fn(self) -> Callable[..., Any]:
        """The undecorated function."""
        return self.definition.fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        instance = current_instance()
        if instance is not None:
            return instance.call_step(self.definition, args, kwargs)
        if self.definition.is_async:
            coro: Coroutine[Any, Any, R] = self.definition.fn(*args, **kwargs)
            return coro
        return _run_plain(self.definition.fn, args, kwargs)


class WorkflowFunction(_Decorated[WorkflowDefinition], Generic[P, R]):
    """What ``@workflow`` returns: pass it to ``Engine.start``, or await it from a workflow.

    Awaited inside another workflow's body it starts a child run and returns the child's
    result (raising :class:`~worldflow.WorkflowFailedError` if the child failed). Called
    anywhere else it just calls the function (useful in tests of pure logic).
    """

    @property
    def fn(self) -> Callable[..., Coroutine[Any, Any, Any]]:
        """The undecorated body."""
        return self.definition.fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        instance = current_instance()
        if instance is not None:
            return instance.call_child(self.definition, args, kwargs)
        coro: Coroutine[Any, Any, R] = self.definition.fn(*args, **kwargs)
        return coro


# -- decorators --------------------------------------------------------------------------------


def _module_name(fn: Callable[..., Any]) -> str:
    """The function's module, by its import name even when it runs as ``python -m module``.

    Without this a workflow would be recorded as ``__main__:...`` when its module is run as a
    script and as ``pkg.module:...`` when imported, and neither could find the other's runs.
    """
    module = fn.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return str(spec.name)
    return module


def _registered_name(fn: Callable[..., Any], name: str | None) -> str:
    if name is None:
        return f"{_module_name(fn)}:{fn.__qualname__}"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name= must be a non-empty str, got {name!r}")
    return name


def _check_user_name(name: str, builtin: bool) -> None:
    if name.startswith(BUILTIN_PREFIX) and not builtin:
        raise ValueError(f"names starting with {BUILTIN_PREFIX!r} are reserved for worldflow")


def _step_options(
    max_retries: int,
    backoff: Backoff | Duration | None,
    timeout: Duration | None,
    concurrency: int | Concurrency | None,
    rate_limit: RateLimit | None = None,
    max_lost_attempts: int = 3,
) -> StepOptions:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"@step(max_retries=...) must be an int >= 0, got {max_retries!r}")
    if (
        isinstance(max_lost_attempts, bool)
        or not isinstance(max_lost_attempts, int)
        or max_lost_attempts < 0
    ):
        raise ValueError(
            f"@step(max_lost_attempts=...) must be an int >= 0, got {max_lost_attempts!r}"
        )
    if concurrency is not None and not isinstance(concurrency, Concurrency):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(
                f"@step(concurrency=...) must be None, an int >= 1 or a Concurrency, "
                f"got {concurrency!r}"
            )
        concurrency = Concurrency(concurrency)
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise TypeError(f"@step(rate_limit=...) is a RateLimit, not {rate_limit!r}")
    limit = None if timeout is None else parse_duration(timeout)
    if limit is not None and limit <= timedelta(0):
        raise ValueError(f"@step(timeout=...) must be positive, got {timeout!r}")
    return StepOptions(
        max_retries=max_retries,
        backoff=Backoff.of(backoff),
        timeout=limit,
        concurrency=concurrency,
        rate_limit=rate_limit,
        max_lost_attempts=max_lost_attempts,
    )


def make_step(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    options: StepOptions | None = None,
    builtin: bool = False,
) -> StepDefinition:
    """Build (and remember process-wide) the definition of a step function."""
    if not callable(fn) or isinstance(fn, type):
        raise TypeError(f"@step decorates a function, not {fn!r}")
    if isinstance(fn, (StepFunction, WorkflowFunction)):
        raise TypeError(f"{fn!r} is already decorated")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"@step cannot decorate the generator {fn.__qualname__}: a step returns one value "
            "(stream chunks with get_writable() instead)"
        )
    registered = _registered_name(fn, name)
    _check_user_name(registered, builtin)
    options = options or StepOptions()
    signature = inspect.signature(fn)
    definition = StepDefinition(
        name=registered,
        fn=fn,
        options=options,
        signature=signature,
        is_async=inspect.iscoroutinefunction(fn),
        limits=flow_limits(
            "step", registered, signature, options.concurrency, options.rate_limit, "@step"
        ),
    )
    _ALL_STEPS[registered] = definition
    return definition


class _StepDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> StepFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> StepFunction[P, R]: ...


@overload
def step(fn: Callable[P, Coroutine[Any, Any, R]], /) -> StepFunction[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> StepFunction[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    max_retries: int = 3,
    backoff: Backoff | Duration | None = None,
    timeout: Duration | None = None,
    concurrency: int | Concurrency | None = None,
    rate_limit: RateLimit | None = None,
    max_lost_attempts: int = 3,
) -> _StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    backoff: Backoff | Duration | None = None,
    timeout: Duration | None = None,
    concurrency: int | Concurrency | None = None,
    rate_limit: RateLimit | None = None,
    max_lost_attempts: int = 3,
) -> Any:
    """Make a function a step: where side effects live, retried, recorded exactly once.

    Use bare (``@step``) or with options::

        @step(max_retries=5, backoff="2s", timeout="30s", concurrency=4)
        async def charge(order_id: str, cents: int) -> str: ...

    Args:
        fn: The function (``async def``, or plain ``def`` which runs in a worker thread).
        name: The registered name; default ``module:qualname``. Keep it stable: recorded
            runs refer to steps by name.
        max_retries: Retries after the first attempt (default 3); ``FatalError`` is never
            retried.
        backoff: A :class:`Backoff`, or a constant delay (seconds, ``"5s"``, ``timedelta``).
        timeout: Each attempt's limit (seconds, ``"30s"``, ``timedelta``), or ``None``.
        concurrency: At most this many attempts at once across every engine on the world
            (an int, or a :class:`~worldflow.Concurrency` keyed by an argument), or ``None``.
            The world holds the count, so it is global, not per process (an engine's own
            cap on all its steps is ``Engine(max_concurrent_steps=)``).
        rate_limit: At most so many attempts start per period across every engine
            (:class:`~worldflow.RateLimit`); over it, an attempt waits its turn.
        max_lost_attempts: Attempts lost to crashes (the process died mid-attempt) before the
            step fails for good (default 3). Neither they nor attempts cut short by an engine
            that stopped count against ``max_retries``.
    """
    options = _step_options(
        max_retries, backoff, timeout, concurrency, rate_limit, max_lost_attempts
    )

    def decorate(target: Callable[..., Any]) -> StepFunction[Any, Any]:
        return StepFunction(make_step(target, name=name, options=options))

    return decorate if fn is None else decorate(fn)


class _WorkflowDecorator(Protocol):
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> WorkflowFunction[P, R]: ...


@overload
def workflow(fn: Callable[P, Coroutine[Any, Any, R]], /) -> WorkflowFunction[P, R]: ...
@overload
def workflow(
    *,
    name: str | None = None,
    schedule: str | CronSchedule | None = None,
    timezone: str = "UTC",
    concurrency: int | Concurrency | None = None,
    rate_limit: RateLimit | None = None,
) -> _WorkflowDecorator: ...
def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | CronSchedule | None = None,
    timezone: str = "UTC",
    concurrency: int | Concurrency | None = None,
    rate_limit: RateLimit | None = None,
) -> Any:
    """Make an ``async def`` function a durable workflow.

    The body orchestrates: it awaits steps, ``sleep``, hooks and events, and may use
    ``asyncio.gather``, ``wait``, ``create_task``, ``TaskGroup`` and ``timeout``. It is
    replayed from the run's log after a restart, so it must do the same thing every time:
    no I/O, clocks or randomness except through steps and ``worldflow.now()``/``random()``.

    Args:
        fn: The ``async def`` body.
        name: The registered name; default ``module:qualname``. Keep it stable: runs refer
            to their workflow by name.
        schedule: Run it by itself on a cron schedule (``"0 9 * * MON-FRI"``), or a
            :class:`~worldflow.CronSchedule` with catch-up and overlap policies. Every engine
            that serves the workflow makes sure the schedule (named after the workflow)
            exists; exactly one run starts per tick however many engines run.
        timezone: The IANA zone a string ``schedule`` is read in.
        concurrency: At most this many runs going at once (from their start to their end)
            across every engine on the world: an int, or a :class:`~worldflow.Concurrency`
            keyed by an argument or by ``RESOURCE_ID`` (one run per customer at a time).
            Runs over the limit wait ``pending``, in order of ``start(..., priority=)``.
        rate_limit: At most so many runs start per period (:class:`~worldflow.RateLimit`);
            the others wait ``pending`` for their turn.
    """
    timing = (
        CronSchedule(cron=schedule, timezone=timezone) if isinstance(schedule, str) else schedule
    )
    if timing is not None and not isinstance(timing, CronSchedule):
        raise TypeError(f"schedule is a cron string or a CronSchedule, not {schedule!r}")

    def decorate(target: Callable[..., Any]) -> WorkflowFunction[Any, Any]:
        if isinstance(target, (StepFunction, WorkflowFunction)):
            raise TypeError(f"{target!r} is already decorated")
        if not inspect.iscoroutinefunction(target):
            raise TypeError(
                "@workflow needs an `async def` function, and "
                f"{getattr(target, '__qualname__', target)!r} is not one"
            )
        registered = _registered_name(target, name)
        _check_user_name(registered, False)
        signature = inspect.signature(target)
        definition = WorkflowDefinition(
            name=registered,
            fn=target,
            signature=signature,
            schedule=timing,
            limits=flow_limits("run", registered, signature, concurrency, rate_limit, "@workflow"),
        )
        _ALL_WORKFLOWS[registered] = definition
        return WorkflowFunction(definition)

    return decorate if fn is None else decorate(fn)


# -- registry ----------------------------------------------------------------------------------

# Every definition made in this process, by name (the latest wins: tests and reloads define the
# same name again). A Registry falls back to these, so a step is found wherever it is defined.
_ALL_STEPS: dict[str, StepDefinition] = {}
_ALL_WORKFLOWS: dict[str, WorkflowDefinition] = {}

Registrable = WorkflowFunction[Any, Any] | WorkflowDefinition
RegistrableStep = StepFunction[Any, Any] | StepDefinition


def _add(table: dict[str, D], definition: D) -> D:
    """Put ``definition`` in ``table`` under its name; another function there is an error."""
    known = table.get(definition.name)
    if known is not None and known.fn is not definition.fn:
        raise ConfigurationError(
            f"two {definition.kind}s are named {definition.name!r} ({known.fn.__qualname__} "
            f"and {definition.fn.__qualname__}); give one of them another name=..."
        )
    table[definition.name] = definition
    return definition


class Registry:
    """The workflows an engine serves, and where it looks up steps and workflows by name.

    Workflows and steps added here win; a name not added is looked up among every
    ``@step`` / ``@workflow`` defined in the process, so steps need no registration.

    Args:
        workflows: Workflows to serve (decorated functions or definitions).
        steps: Steps to register explicitly (optional).

    Raises:
        ConfigurationError: Two different functions were given the same name.
    """

    def __init__(
        self, workflows: Iterable[Registrable] = (), steps: Iterable[RegistrableStep] = ()
    ) -> None:
        self._workflows: dict[str, WorkflowDefinition] = {}
        self._steps: dict[str, StepDefinition] = {}
        for wf in workflows:
            self.add_workflow(wf)
        for s in steps:
            self.add_step(s)

    def add_workflow(self, wf: Registrable) -> WorkflowDefinition:
        """Serve ``wf``; a second, different function under the same name is an error."""
        definition = wf.definition if isinstance(wf, WorkflowFunction) else wf
        if not isinstance(definition, WorkflowDefinition):
            raise TypeError(f"not a @workflow: {wf!r}")
        return _add(self._workflows, definition)

    def add_step(self, s: RegistrableStep) -> StepDefinition:
        """Register ``s``; a second, different function under the same name is an error."""
        definition = s.definition if isinstance(s, StepFunction) else s
        if not isinstance(definition, StepDefinition):
            raise TypeError(f"not a @step: {s!r}")
        return _add(self._steps, definition)

    def replace_step(self, name: str, definition: StepDefinition | None) -> StepDefinition | None:
        """Serve ``definition`` under ``name`` in place of what was there (``None``: remove
        this registry's own entry), and return this registry's previous entry, if any.

        For tests (``worldflow.testing.override_step``): unlike :meth:`add_step`, another
        function under a taken name is not an error.
        """
        previous = self._steps.pop(name, None)
        if definition is not None:
            self._steps[name] = definition
        return previous

    @property
    def workflows(self) -> list[WorkflowDefinition]:
        """The workflows added to this registry, in the order they were added."""
        return list(self._workflows.values())

    def workflow(self, name: str) -> WorkflowDefinition:
        """The workflow named ``name``, or :class:`~worldflow.WorkflowNotRegisteredError`."""
        found = self._workflows.get(name) or _ALL_WORKFLOWS.get(name)
        if found is None:
            served = ", ".join(sorted(self._workflows)) or "none"
            raise WorkflowNotRegisteredError(
                f"no workflow is registered as {name!r} (this engine serves: {served}); "
                "pass it in Engine(workflows=[...]) and make sure its module is imported"
            )
        return found

    def find_step(self, name: str) -> StepDefinition | None:
        """The step named ``name``, or ``None`` (what :meth:`step` finds, without raising)."""
        return self._steps.get(name) or _ALL_STEPS.get(name)

    def step(self, name: str) -> StepDefinition:
        """The step named ``name``, or :class:`~worldflow.StepNotRegisteredError`."""
        found = self._steps.get(name) or _ALL_STEPS.get(name)
        if found is None:
            raise StepNotRegisteredError(
                f"no step is registered as {name!r}: import the module that defines it "
                "(steps register when their @step decorator runs), or check a renamed step"
            )
        return found

    def has_workflow(self, name: str) -> bool:
        """Whether :meth:`workflow` would find ``name``."""
        return name in self._workflows or name in _ALL_WORKFLOWS

    def serves(self, name: str) -> bool:
        """Whether ``name`` was added to this registry (what an engine serves and claims;
        :meth:`workflow` also finds every other ``@workflow`` of the process)."""
        return name in self._workflows

    def workflow_names(self) -> list[str]:
        """The names of the workflows added to this registry, sorted."""
        return sorted(self._workflows)

    def has_step(self, name: str) -> bool:
        """Whether :meth:`step` would find ``name``."""
        return name in self._steps or name in _ALL_STEPS
