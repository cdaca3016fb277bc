"""Replacing a step's implementation in a test."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from worldflow._registry import Registry, StepDefinition, StepFunction

if TYPE_CHECKING:
    from worldflow._runtime.engine import Engine

__all__ = ["override_step"]


@contextmanager
def override_step(
    engine: Engine | Registry,
    step: StepFunction[..., Any] | str,
    replacement: Callable[..., Any],
) -> Iterator[StepDefinition]:
    """Run ``replacement`` instead of ``step`` in ``engine`` for the length of a ``with`` block.

    The step keeps its registered name, options (retries, timeout, concurrency) and signature:
    workflows call it as before and the log records it as before, so a history recorded with
    the fake replays against the real step. ``replacement`` is called with the step's
    arguments; it may be ``async def`` or a plain function (run in a thread), and may raise
    ``RetryableError`` / ``FatalError`` to exercise the workflow's error handling.

    Example::

        async def declined(order_id: str, cents: int) -> str:
            raise FatalError("card declined")

        with override_step(engine, charge, declined):
            run = await engine.start(checkout, "o-1")
            with pytest.raises(WorkflowFailedError):
                await run.result()

    Args:
        engine: The engine (or a registry) whose step to replace.
        step: The ``@step`` function, or its registered name.
        replacement: What to run instead.

    Raises:
        StepNotRegisteredError: No step is registered under that name.
    """
    registry = engine if isinstance(engine, Registry) else engine.registry
    name = step.name if isinstance(step, StepFunction) else step
    original = registry.step(name)
    if not callable(replacement):
        raise TypeError(f"override_step() needs a function to run instead of {name!r}")
    fake = StepDefinition(
        name=name,
        fn=replacement,
        options=original.options,
        signature=original.signature,
        is_async=inspect.iscoroutinefunction(replacement),
        limits=original.limits,
    )
    previous = registry.replace_step(name, fake)
    try:
        yield fake
    finally:
        registry.replace_step(name, previous)
