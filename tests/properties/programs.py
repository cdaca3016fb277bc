"""Workflow *programs*: small trees of primitives, run by one generic interpreter workflow.

A :class:`Program` is plain data (frozen dataclasses whose ``repr`` is the Python that builds
them), so a failing property prints the program and hypothesis can shrink it. One interpreter
(:func:`interpret`) turns a program into workflow behaviour; :func:`definition` wraps it as the
workflow ``props.program`` (the program is the *code*: a changed program replayed against an
old log must be caught as nondeterminism).

The body returns ``{"trace": [...], "state": ...}``: the trace lists what happened in the
order it happened (step results, hook payloads, timeouts, race winners), so a replay that
delivers events in another order, or reorders ``gather`` results, gives another result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

from hypothesis import strategies as st

import worldflow
from worldflow import (
    Backoff,
    FatalError,
    StepFailedError,
    StepFunction,
    WorkflowFailedError,
    create_hook,
    get_state,
    set_state,
    step,
    wait_for_event,
    workflow,
)
from worldflow._registry import WorkflowDefinition

__all__ = [
    "EVENT_NAMES",
    "FLAKY",
    "FLAKY_BACKOFF",
    "FLAKY_MAX_RETRIES",
    "PROGRAM_WORKFLOW",
    "STEP_NAMES",
    "Block",
    "Child",
    "Event",
    "FirstOf",
    "Gather",
    "Hook",
    "HookTimeout",
    "HookVsSleep",
    "Loop",
    "Node",
    "Program",
    "SetState",
    "Sleep",
    "Step",
    "child_result",
    "definition",
    "programs",
    "step_result",
]

PROGRAM_WORKFLOW = "props.program"
STEP_NAMES = ("a", "b", "c")
EVENT_NAMES = ("e1", "e2")
_EXTRA_STEP_NAMES = ("renamed", "inserted")
FLAKY = "flaky"
"""A step with few retries and a growing backoff (the retry properties use it)."""
FLAKY_MAX_RETRIES = 3
FLAKY_BACKOFF = (10.0, 3.0, 60.0)
"""``(initial, factor, maximum)`` seconds: waits of 10, 30, 60 after attempts 1, 2, 3."""

# -- the nodes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """``await props.<name>(key, arg)``; a failure is recorded in the trace if ``catch``."""

    node: int
    name: str = "a"
    arg: int = 0
    catch: bool = False


@dataclass(frozen=True)
class Sleep:
    """``await worldflow.sleep(seconds)``."""

    node: int
    seconds: float = 60.0


@dataclass(frozen=True)
class Hook:
    """``with create_hook(token) as h: await h`` (one payload)."""

    node: int


@dataclass(frozen=True)
class HookVsSleep:
    """``asyncio.wait({hook, sleep(seconds)}, FIRST_COMPLETED)``; the loser is cancelled."""

    node: int
    seconds: float = 60.0


@dataclass(frozen=True)
class HookTimeout:
    """``async with asyncio.timeout(seconds): await hook``."""

    node: int
    seconds: float = 60.0


@dataclass(frozen=True)
class Event:
    """``await wait_for_event(name, timeout=timeout)``."""

    node: int
    name: str = "e1"
    timeout: float | None = None


@dataclass(frozen=True)
class SetState:
    """``set_state(get_state() + [key])``."""

    node: int


@dataclass(frozen=True)
class Child:
    """``await props.child(key, calls, fail)``: a child workflow running steps ``calls``."""

    node: int
    calls: tuple[tuple[str, int], ...] = ()
    fail: bool = False
    catch: bool = True


@dataclass(frozen=True)
class Gather:
    """``await asyncio.gather(*branches)``: every branch's trace, in argument order."""

    node: int
    branches: tuple[Block, ...] = ()


@dataclass(frozen=True)
class FirstOf:
    """``asyncio.wait(branches, FIRST_COMPLETED)``; the others are cancelled."""

    node: int
    branches: tuple[Block, ...] = ()


@dataclass(frozen=True)
class Loop:
    """``for i in range(times): body``."""

    node: int
    times: int = 2
    body: Block = ()


Node: TypeAlias = (
    Step
    | Sleep
    | Hook
    | HookVsSleep
    | HookTimeout
    | Event
    | SetState
    | Child
    | Gather
    | FirstOf
    | Loop
)
Block: TypeAlias = tuple[Node, ...]


@dataclass(frozen=True)
class Program:
    """A workflow body as data. ``repr`` is the Python that builds it."""

    body: Block = ()

    def nodes(self) -> list[Node]:
        """Every node, depth first."""
        out: list[Node] = []

        def walk(block: Block) -> None:
            for node in block:
                out.append(node)
                if isinstance(node, (Gather, FirstOf)):
                    for branch in node.branches:
                        walk(branch)
                elif isinstance(node, Loop):
                    walk(node.body)

        walk(self.body)
        return out

    def replace(self, node_id: int, make: Callable[[Node], Block]) -> Program:
        """A copy with the node numbered ``node_id`` replaced by the nodes ``make(node)``."""

        def edit(block: Block) -> Block:
            out: list[Node] = []
            for node in block:
                if node.node == node_id:
                    out.extend(make(node))
                    continue
                if isinstance(node, (Gather, FirstOf)):
                    node = dataclasses.replace(node, branches=tuple(edit(b) for b in node.branches))
                elif isinstance(node, Loop):
                    node = dataclasses.replace(node, body=edit(node.body))
                out.append(node)
            return tuple(out)

        return Program(edit(self.body))

    def event_names(self) -> list[str]:
        """The event names the program waits for."""
        return sorted({n.name for n in self.nodes() if isinstance(n, Event)})


# -- steps and the child workflow --------------------------------------------------------------


def step_result(name: str, key: str, arg: int) -> str:
    """What step ``name`` returns for ``(key, arg)`` (a pure function of its input)."""
    return f"{name}({key},{arg})"


StepHook = Callable[[str, str, int], Coroutine[Any, Any, None]]
_behaviour: list[StepHook] = []


def set_step_behaviour(hook: StepHook | None) -> None:
    """Install what the generic steps do before returning (engine-level tests: wait on the
    virtual clock, fail as the schedule says); ``None`` removes it."""
    _behaviour.clear()
    if hook is not None:
        _behaviour.append(hook)


def _make_step(name: str) -> StepFunction[[str, int], str]:
    async def run(key: str, arg: int) -> str:
        for hook in _behaviour:
            await hook(name, key, arg)
        return step_result(name, key, arg)

    run.__qualname__ = run.__name__ = f"step_{name}"
    if name == FLAKY:
        initial, factor, maximum = FLAKY_BACKOFF
        backoff = Backoff(
            initial=timedelta(seconds=initial), factor=factor, maximum=timedelta(seconds=maximum)
        )
        return step(name=f"props.{name}", max_retries=FLAKY_MAX_RETRIES, backoff=backoff)(run)
    return step(name=f"props.{name}", max_retries=20, backoff=0)(run)


STEPS: dict[str, StepFunction[[str, int], str]] = {
    name: _make_step(name) for name in (*STEP_NAMES, *_EXTRA_STEP_NAMES, FLAKY)
}


def child_result(key: str, calls: list[tuple[str, int]] | list[list[Any]]) -> list[str]:
    """What ``props.child`` returns when it completes."""
    return [step_result(str(name), f"{key}/{i}", int(arg)) for i, (name, arg) in enumerate(calls)]


@workflow(name="props.child")
async def child(key: str, calls: list[list[Any]], fail: bool) -> list[str]:
    """The child workflow of :class:`Child` nodes: run ``calls`` in order, maybe fail."""
    out = [await STEPS[str(name)](f"{key}/{i}", int(arg)) for i, (name, arg) in enumerate(calls)]
    if fail:
        raise FatalError(f"child {key} fails as planned")
    return out


# -- the interpreter ---------------------------------------------------------------------------


class _Interpreter:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.trace: list[str] = []

    async def block(self, block: Block, path: str) -> list[str]:
        out: list[str] = []
        for node in block:
            out.extend(await self.node(node, path))
        return out

    def emit(self, entry: str) -> list[str]:
        self.trace.append(entry)
        return [entry]

    async def node(self, node: Node, path: str) -> list[str]:
        key = f"n{node.node}{path}"
        match node:
            case Step():
                try:
                    value = await STEPS[node.name](key, node.arg + self.seed)
                except StepFailedError as exc:
                    if not node.catch:
                        raise
                    return self.emit(f"{key}!{exc.error_name}")
                return self.emit(f"{key}={value}")
            case Sleep():
                await worldflow.sleep(node.seconds)
                return self.emit(f"{key}:slept")
            case Hook():
                with create_hook(token=f"tok-{key}") as hook:
                    payload = await hook
                return self.emit(f"{key}<{payload}")
            case HookVsSleep():
                with create_hook(token=f"tok-{key}") as hook:
                    got = asyncio.ensure_future(hook.receive())
                    nap = asyncio.ensure_future(worldflow.sleep(node.seconds))
                    try:
                        await asyncio.wait((got, nap), return_when=asyncio.FIRST_COMPLETED)
                    finally:  # also when this branch is cancelled: leave no task behind
                        for task in (got, nap):
                            task.cancel()
                        await asyncio.gather(got, nap, return_exceptions=True)
                    if got.cancelled():
                        return self.emit(f"{key}:slept")
                    return self.emit(f"{key}<{got.result()}")
            case HookTimeout():
                with create_hook(token=f"tok-{key}") as hook:
                    try:
                        async with asyncio.timeout(node.seconds):
                            payload = await hook
                    except TimeoutError:
                        return self.emit(f"{key}:timeout")
                return self.emit(f"{key}<{payload}")
            case Event():
                try:
                    payload = await wait_for_event(node.name, timeout=node.timeout)
                except TimeoutError:
                    return self.emit(f"{key}:no {node.name}")
                return self.emit(f"{key}<{node.name}:{payload}")
            case SetState():
                state = list(get_state() or [])
                set_state([*state, key])
                return self.emit(f"{key}:state{len(state) + 1}")
            case Child():
                calls = [[name, arg] for name, arg in node.calls]
                try:
                    result = await child(key, calls, node.fail)
                except WorkflowFailedError as exc:
                    if not node.catch:
                        raise
                    return self.emit(f"{key}!child {exc.error_name}")
                return self.emit(f"{key}=child{result}")
            case Gather():
                parts = await asyncio.gather(
                    *(self.block(b, f"{path}.{i}") for i, b in enumerate(node.branches))
                )
                joined = [entry for part in parts for entry in part]
                return self.emit(f"{key}:gather{[len(p) for p in parts]}{joined}")
            case FirstOf():
                tasks = [
                    asyncio.ensure_future(self.block(b, f"{path}.{i}"))
                    for i, b in enumerate(node.branches)
                ]
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                # Iterate the set asyncio.wait returns, as users do: its order must replay.
                losers = list(pending)
                for task in losers:
                    task.cancel()
                await asyncio.gather(*losers, return_exceptions=True)
                winners = [i for i, task in enumerate(tasks) if task in done]
                failures = [tasks[i].exception() for i in winners]  # retrieve every one
                for error in failures:
                    if error is not None:
                        raise error  # the first failed winner fails the node
                return self.emit(f"{key}:first{winners}")
            case Loop():
                out: list[str] = []
                for i in range(node.times):
                    out.extend(await self.block(node.body, f"{path}@{i}"))
                return out
        raise AssertionError(f"unknown node {node!r}")


async def interpret(program: Program, seed: int) -> dict[str, Any]:
    """Run ``program`` as a workflow body."""
    interpreter = _Interpreter(seed)
    await interpreter.block(program.body, "")
    return {"trace": interpreter.trace, "state": get_state()}


def definition(program: Program) -> WorkflowDefinition:
    """The workflow ``props.program`` whose code is ``program``."""

    async def body(seed: int) -> dict[str, Any]:
        return await interpret(program, seed)

    return WorkflowDefinition(name=PROGRAM_WORKFLOW, fn=body, signature=inspect.signature(body))


# -- strategies --------------------------------------------------------------------------------

_seconds = st.integers(1, 5).map(lambda n: float(n * 60))


@functools.cache
def _leaves() -> st.SearchStrategy[Node]:
    leaves: list[st.SearchStrategy[Node]] = [
        st.builds(
            Step,
            node=st.just(0),
            name=st.sampled_from(STEP_NAMES),
            arg=st.integers(0, 3),
            catch=st.booleans(),
        ),
        st.builds(Sleep, node=st.just(0), seconds=_seconds),
        st.builds(SetState, node=st.just(0)),
        st.builds(
            Event,
            node=st.just(0),
            name=st.sampled_from(EVENT_NAMES),
            timeout=st.none() | _seconds,
        ),
        st.builds(
            Child,
            node=st.just(0),
            calls=st.lists(
                st.tuples(st.sampled_from(STEP_NAMES), st.integers(0, 3)), max_size=2
            ).map(tuple),
            fail=st.booleans(),
            catch=st.booleans(),
        ),
        st.builds(Hook, node=st.just(0)),
        st.builds(HookVsSleep, node=st.just(0), seconds=_seconds),
        st.builds(HookTimeout, node=st.just(0), seconds=_seconds),
    ]
    return st.one_of(leaves)


def _composites(children: st.SearchStrategy[Block]) -> st.SearchStrategy[Node]:
    branches = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(
        st.builds(Gather, node=st.just(0), branches=branches),
        st.builds(FirstOf, node=st.just(0), branches=branches),
        st.builds(Loop, node=st.just(0), times=st.integers(1, 3), body=children),
    )


def _blocks(children: st.SearchStrategy[Block]) -> st.SearchStrategy[Block]:
    return st.lists(_leaves() | _composites(children), min_size=1, max_size=4).map(tuple)


def _number(block: Block, counter: list[int]) -> Block:
    out: list[Node] = []
    for node in block:
        counter[0] += 1
        number = counter[0]
        if isinstance(node, (Gather, FirstOf)):
            node = dataclasses.replace(
                node, branches=tuple(_number(b, counter) for b in node.branches)
            )
        elif isinstance(node, Loop):
            node = dataclasses.replace(node, body=_number(node.body, counter))
        out.append(dataclasses.replace(node, node=number))
    return tuple(out)


@functools.cache
def programs(max_leaves: int = 8) -> st.SearchStrategy[Program]:
    """Programs of a few to a few dozen primitives, with nested gathers, races and loops."""
    leaf_blocks = st.lists(_leaves(), min_size=1, max_size=3).map(tuple)
    nested = st.recursive(leaf_blocks, _blocks, max_leaves=max_leaves)
    body = st.lists(_leaves() | _composites(nested), min_size=2, max_size=8).map(tuple)
    return body.map(lambda b: Program(_number(b, [0])))
