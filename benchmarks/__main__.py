"""``python -m benchmarks``: run the suite, print the table, write the JSON results.

Exits non-zero when a correctness check fails (a wrong result, a lost run, a step recorded
twice, a workload that crashed or hung), never because a time was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from benchmarks._report import render_checks, render_machine, render_table, write_json
from benchmarks._suite import ALL_WORKLOADS, Options, run_suite

RESULTS = Path(__file__).parent / "results"


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``--quick``, ``--world``, ``--workload``, ``--json``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="worldflow's benchmark suite: workloads W1-W8 on every world, with the "
        "floors measured in the same run. See benchmarks/README.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes; checks correctness only (the times mean little)",
    )
    parser.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="NAME",
        help="run on this world only (memory, file, remote, postgres); repeat or comma-separate",
    )
    parser.add_argument(
        "--workload",
        default=",".join(ALL_WORKLOADS),
        metavar="W1,W3",
        help=f"workloads to run (default: all of {','.join(ALL_WORKLOADS)})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="where to write the JSON results (default: benchmarks/results/<timestamp>.json)",
    )
    args = parser.parse_args(argv)
    args.world = tuple(name for text in args.world for name in _names(text))
    args.workload = tuple(name.upper() for name in _names(args.workload))
    unknown = [name for name in args.workload if name not in ALL_WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(ALL_WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the suite as the command line asks; return the exit status."""
    args = parse_args(argv)
    options = Options(
        quick=args.quick,
        worlds=args.world,
        workloads=args.workload,
        progress=lambda message: print(f"… {message}", file=sys.stderr, flush=True),
    )
    try:
        report = asyncio.run(run_suite(options))
    except ValueError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 2
    print()
    print(render_table(report))
    print()
    print(render_machine(report))
    for note in report.notes:
        print(f"note: {note}")
    print(render_checks(report))
    path = args.json or RESULTS / f"{report.started_at.replace(':', '')}.json"
    write_json(report, path)
    print(f"results: {path}")
    return 1 if report.failed_checks else 0


if __name__ == "__main__":
    sys.exit(main())
