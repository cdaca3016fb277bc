"""The harness: run the floors, then every selected workload on every available world."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import _floors
from benchmarks._measure import Figures, Outcome, median_figures
from benchmarks._report import (
    PEERS,
    VOLATILE_FILESYSTEMS,
    Check,
    Figure,
    Report,
    filesystem_of,
    judge,
    load_average,
)
from benchmarks._sizes import FULL, QUICK, Sizes
from benchmarks._workloads import WORKLOADS, Workload
from benchmarks._worlds import WORLDS, Cell, WorldSpec, WorldUnavailable, probe, stop_servers

__all__ = ["Options", "run_suite"]

ALL_WORKLOADS = tuple(WORKLOADS)


@dataclass(frozen=True)
class Options:
    """What to run: ``quick`` sizes, which worlds (all when empty) and which workloads."""

    quick: bool = False
    worlds: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ALL_WORKLOADS
    progress: Callable[[str], None] | None = None

    @property
    def sizes(self) -> Sizes:
        """The quick or the full sizes."""
        return QUICK if self.quick else FULL


async def run_suite(options: Options) -> Report:
    """Run the floors and the workloads; return the report with every target judged."""
    report = Report.begin(quick=options.quick)
    say = options.progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="worldflow-bench-") as tmp:
        scratch = Path(tmp)
        report.machine["scratch_fs"] = filesystem_of(scratch)
        if report.machine["scratch_fs"] in VOLATILE_FILESYSTEMS:
            report.notes.append(
                f"the scratch directory {scratch} is on {report.machine['scratch_fs']}, where "
                "a sync costs nothing: no durable figure is judged (set TMPDIR to a disk)"
            )
        if options.quick:
            report.notes.append(
                "quick run: correctness only; its sizes are not those of the targets, so no "
                "target is judged"
            )
        for workload in options.workloads:
            if workload in _FLOOR_RUNNERS:
                for floor in _floors.FLOORS:
                    say(f"{workload} floor {floor}")
                    once = functools.partial(
                        _FLOOR_RUNNERS[workload], floor, options.sizes, scratch
                    )
                    outcome = await _repeated(options.sizes.repeats, once)
                    _record(report, workload, floor, "floor", outcome)
        try:
            for spec in await _available_worlds(options, scratch, report):
                report.worlds.append(spec.name)
                for workload in options.workloads:
                    run = WORKLOADS[workload]
                    if run.durable_only and not spec.durable:
                        continue
                    say(f"{workload} on {spec.name}")
                    cell = Cell(world=spec, sizes=options.sizes, scratch=scratch)
                    outcome = await _guarded(run, cell)
                    _record(report, workload, spec.name, "world", outcome)
        finally:
            stop_servers()  # the served worlds (remote), before their directories go
    report.figures.extend(peer for peer in PEERS if peer.workload in options.workloads)
    report.verdicts = judge(
        report.figures, quick=options.quick, scratch_fs=report.machine["scratch_fs"]
    )
    report.machine["load_average_1m_end"] = load_average()
    return report


async def _available_worlds(options: Options, scratch: Path, report: Report) -> list[WorldSpec]:
    known = {spec.name for spec in WORLDS}
    unknown = [name for name in options.worlds if name not in known]
    if unknown:
        raise ValueError(
            f"unknown world(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))}"
        )
    chosen = [spec for spec in WORLDS if not options.worlds or spec.name in options.worlds]
    available = []
    for spec in chosen:
        try:
            await probe(spec, scratch)
        except WorldUnavailable as exc:
            report.notes.append(f"world {spec.name} skipped: {exc}")
            if spec.name in ("memory", "file", "remote") or spec.name in options.worlds:
                # A built-in world, or one asked for by name, must run: not running it is a
                # failure, not a skip.
                report.checks.append(
                    Check(
                        workload="-",
                        source=spec.name,
                        name="world opens",
                        ok=False,
                        detail=str(exc),
                    )
                )
            continue
        available.append(spec)
    return available


async def _guarded(run: Workload, cell: Cell) -> Outcome:
    """Run a workload (repeated if it asks to be); a crash or a hang becomes a failed check."""
    sizes = cell.sizes
    try:
        async with asyncio.timeout(sizes.timeout):
            return await _repeated(sizes.repeats if run.repeated else 1, lambda: run(cell))
    except TimeoutError:
        failed = Outcome()
        failed.check("finished", False, f"still running after {sizes.timeout:g} s")
        return failed
    except Exception as exc:
        failed = Outcome()
        where = traceback.extract_tb(exc.__traceback__)[-1]
        failed.check(
            "finished", False, f"{type(exc).__name__}: {exc} ({where.filename}:{where.lineno})"
        )
        return failed


async def _repeated(times: int, once: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Run ``once`` ``times`` times; keep every check and note, and the median figures."""
    outcomes = [await once() for _ in range(times)]
    merged = Outcome()
    merged.figures = median_figures([o.figures for o in outcomes])
    for outcome in outcomes:
        merged.checks.extend(c for c in outcome.checks if c not in merged.checks)
        merged.notes.extend(n for n in outcome.notes if n not in merged.notes)
    return merged


def _record(report: Report, workload: str, source: str, kind: str, outcome: Outcome) -> None:
    for metric, value in outcome.figures.items():
        report.figures.append(
            Figure(
                workload=workload,
                source=source,
                metric=metric,
                value=value,
                kind="floor" if kind == "floor" else "world",
            )
        )
    for name, ok, detail in outcome.checks:
        report.checks.append(
            Check(workload=workload, source=source, name=name, ok=ok, detail=detail)
        )
    report.notes.extend(f"{workload} {source}: {note}" for note in outcome.notes)


# -- floors ----------------------------------------------------------------------------------


async def _floor_w1(floor: str, sizes: Sizes, scratch: Path) -> Outcome:
    ledger = _floors.Ledger(floor, scratch)
    try:
        figures, results = await _floors.floor_throughput(
            ledger, runs=sizes.w1_runs, steps=sizes.w1_steps, in_flight=sizes.w1_in_flight
        )
    finally:
        ledger.close()
    expected = [i + sizes.w1_steps for i in range(sizes.w1_runs)]
    return _floor_outcome(figures, results, expected)


async def _floor_w2(floor: str, sizes: Sizes, scratch: Path) -> Outcome:
    ledger = _floors.Ledger(floor, scratch)
    try:
        figures, results = await _floors.floor_latency(ledger, runs=sizes.w2_runs)
    finally:
        ledger.close()
    return _floor_outcome(figures, results, [i + 1 for i in range(sizes.w2_runs)])


async def _floor_w3(floor: str, sizes: Sizes, scratch: Path) -> Outcome:
    ledger = _floors.Ledger(floor, scratch)
    try:
        figures, results = await _floors.floor_hook(ledger, runs=sizes.w3_runs)
    finally:
        ledger.close()
    return _floor_outcome(figures, results, [i + 1 for i in range(sizes.w3_runs)])


async def _floor_w4(floor: str, sizes: Sizes, scratch: Path) -> Outcome:
    ledger = _floors.Ledger(floor, scratch)
    try:
        figures, total = await _floors.floor_fanout(ledger, width=sizes.w4_width)
    finally:
        ledger.close()
    return _floor_outcome(figures, [total], [sum(range(sizes.w4_width))])


def _floor_outcome(figures: Figures, results: Sequence[int], expected: list[int]) -> Outcome:
    outcome = Outcome()
    outcome.figures = figures
    outcome.check_equal("results right", list(results), expected)
    return outcome


_FLOOR_RUNNERS: dict[str, Callable[[str, Sizes, Path], Awaitable[Outcome]]] = {
    "W1": _floor_w1,
    "W2": _floor_w2,
    "W3": _floor_w3,
    "W4": _floor_w4,
}
