"""The layers of DESIGN.md §1, checked by walking every import (the AST, not a grep):

* ``worldflow._replay`` (the pure core) imports no world implementation, no clock and no I/O
  (asyncio is fine: it is how the deterministic loop runs; sockets, files and time are not);
* ``worldflow.worlds`` imports nothing of the engine but ``worldflow.errors``;
* nothing but the inspector itself imports ``worldflow.inspector``;
* nobody imports another package's private module for a name that package exports.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {"engine": "worldflow", "worlds": "worldflow.worlds", "inspector": "worldflow.inspector"}
"""Source folder → the package it installs as (``package-dir`` in pyproject.toml)."""

OTHER_CODE = ("tests", "benchmarks", "examples")
"""Code outside the packages: it may use any package, through its public names."""

REPLAY_FORBIDDEN = (
    # world implementations, clocks and wake-ups
    "worldflow.worlds._memory",
    "worldflow.worlds._file",
    "worldflow.worlds._remote",
    "worldflow.worlds._postgres",
    "worldflow.worlds._open",
    "worldflow.worlds._clock",
    "worldflow.worlds._wakeups",
    "worldflow.worlds.MemoryWorld",
    "worldflow.worlds.FileWorld",
    "worldflow.worlds.open_world",
    "worldflow._runtime",
    "worldflow.testing",
    "worldflow.inspector",
    # time and I/O
    "time",
    "socket",
    "ssl",
    "select",
    "selectors",
    "signal",
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "subprocess",
    "threading",
    "multiprocessing",
    "concurrent",
    "http",
    "urllib",
    "aiofiles",
    "aiohttp",
    "asyncpg",
    "asyncio.subprocess",
    "asyncio.streams",
)
_CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
_TIME_FUNCTIONS = frozenset({"time", "time_ns", "monotonic", "perf_counter", "sleep"})


def _reads_the_world(func: ast.expr) -> bool:
    """``open(...)``, ``<anything>.now()`` / ``.utcnow()`` / ``.today()``, ``time.time()``:
    calls that read a clock or a file (the loop's own ``self.time()`` is workflow time)."""
    if isinstance(func, ast.Name):
        return func.id == "open"
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr in _CLOCK_METHODS:
        return True
    receiver = func.value
    return isinstance(receiver, ast.Name) and receiver.id == "time" and func.attr in _TIME_FUNCTIONS


@dataclass(frozen=True)
class Import:
    """One imported name as a dotted path (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""

    line: int
    target: str
    module: str
    name: str | None


def _module_name(path: Path) -> str | None:
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = PACKAGES.get(parts[0])
    if package is None:
        return None
    rest = [p for p in parts[1:] if p != "__init__"]
    return ".".join([package, *rest])


def imports(source: str, module: str | None, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source`` (in functions and ``TYPE_CHECKING`` blocks too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                assert module is not None, "a relative import outside a package"
                parent = module.split(".")
                keep = len(parent) - node.level + (1 if is_package else 0)
                base = ".".join(parent[:keep] + ([base] if base else []))
            for alias in node.names:
                yield Import(node.lineno, f"{base}.{alias.name}", base, alias.name)


def _under(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def replay_violations(source: str, module: str) -> list[str]:
    """Why ``source`` (a module of the pure core) breaks its rule, if it does."""
    found = [
        f"line {i.line}: imports {i.target}"
        for i in imports(source, module)
        if any(_under(i.target, bad) or _under(i.module, bad) for bad in REPLAY_FORBIDDEN)
    ]
    found.extend(
        f"line {node.lineno}: calls {ast.unparse(node.func)}()"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and _reads_the_world(node.func)
    )
    return found


def worlds_violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Imports of the engine by a world module (only ``worldflow.errors`` is allowed)."""
    found = []
    for i in imports(source, module, is_package=is_package):
        target = i.target if i.module == "worldflow" else i.module
        if not _under(target, "worldflow") or _under(target, "worldflow.worlds"):
            continue
        if not _under(target, "worldflow.errors"):
            found.append(f"line {i.line}: imports {target}")
    return found


def private_violations(source: str, module: str | None, public: dict[str, set[str]]) -> list[str]:
    """``from <package>._private import Name`` from outside ``<package>`` where the package
    exports ``Name``."""
    mine = _package_of(module) if module is not None else None
    found = []
    for i in imports(source, module):
        owner = _package_of(i.module)
        if owner is None or owner == mine or i.name is None:
            continue
        rest = i.module[len(owner) :].strip(".").split(".")
        if any(part.startswith("_") for part in rest if part) and i.name in public[owner]:
            found.append(f"line {i.line}: {i.module}.{i.name} is {owner}.{i.name}")
    return found


def _package_of(module: str) -> str | None:
    for package in sorted(PACKAGES.values(), key=len, reverse=True):
        if _under(module, package):
            return package
    return None


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _public() -> dict[str, set[str]]:
    return {p: set(importlib.import_module(p).__all__) for p in PACKAGES.values()}


# -- the rules, on the tree --------------------------------------------------------------------


def test_the_replay_core_imports_no_world_no_clock_no_io() -> None:
    problems: list[str] = []
    for path in _sources("engine/_replay"):
        module = _module_name(path)
        assert module is not None
        problems += [
            f"{path.relative_to(ROOT)} {p}" for p in replay_violations(path.read_text(), module)
        ]
    assert not problems, "\n".join(problems)


def test_worlds_import_nothing_of_the_engine_but_its_errors() -> None:
    problems: list[str] = []
    for path in _sources("worlds"):
        module = _module_name(path)
        assert module is not None
        found = worlds_violations(path.read_text(), module, is_package=path.name == "__init__.py")
        problems += [f"{path.relative_to(ROOT)} {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_nothing_depends_on_the_inspector() -> None:
    problems: list[str] = []
    for path in _sources("engine", "worlds"):
        if path.name.startswith("_cli"):
            continue  # `worldflow serve` launches the app: the one place that may import it
        found = imports(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")
        problems.extend(
            f"{path.relative_to(ROOT)} line {i.line}: imports {i.target}"
            for i in found
            if _under(i.target, "worldflow.inspector") or _under(i.module, "worldflow.inspector")
        )
    assert not problems, "\n".join(problems)


def test_packages_are_crossed_by_their_public_names() -> None:
    public = _public()
    problems: list[str] = []
    for path in _sources(*PACKAGES, *OTHER_CODE):
        found = private_violations(path.read_text(), _module_name(path), public)
        problems += [f"{path.relative_to(ROOT)} {p}" for p in found]
    assert not problems, "\n".join(problems)


# -- the checks catch what they are meant to ---------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import time\n",
        "from worldflow.worlds._memory.world import MemoryWorld\n",
        "from worldflow.worlds import MemoryWorld\n",
        "from worldflow._runtime.driver import Driver\n",
        "from pathlib import Path\n",
        "import asyncio.subprocess\n",
        "def f():\n    return open('x')\n",
        "from datetime import datetime\nx = datetime.now()\n",
    ],
)
def test_the_replay_check_catches(source: str) -> None:
    assert replay_violations(source, "worldflow._replay.x")


def test_the_replay_check_lets_asyncio_and_records_through() -> None:
    source = "import asyncio\nfrom worldflow.worlds import RunCreated\nfrom . import loop\n"
    assert replay_violations(source, "worldflow._replay.x") == []


def test_the_worlds_check_catches_an_engine_import() -> None:
    assert worlds_violations("from worldflow._serde import encode\n", "worldflow.worlds._x")
    assert worlds_violations("from worldflow import _serde\n", "worldflow.worlds._x")
    assert worlds_violations("from ... import api\n", "worldflow.worlds._memory.x")
    assert not worlds_violations("from worldflow.errors import WorldError\n", "worldflow.worlds.x")
    assert not worlds_violations("from . import _events\n", "worldflow.worlds._x")


def test_the_private_check_catches_a_missing_public_name() -> None:
    public = {"worldflow": {"Backoff"}, "worldflow.worlds": {"NULL"}, "worldflow.inspector": set()}
    bad = "from worldflow.worlds._records import NULL\nfrom worldflow._registry import Backoff\n"
    assert len(private_violations(bad, None, public)) == 2
    assert private_violations(bad, "worldflow.worlds._x", public) == [
        "line 2: worldflow._registry.Backoff is worldflow.Backoff"
    ]
    fine = "from worldflow.worlds._clock import Clock\nfrom worldflow.worlds import NULL\n"
    assert private_violations(fine, None, public) == []
