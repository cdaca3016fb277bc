#!/usr/bin/env bash
# Instructions per step of W1's shape (a 3-step chain, 100 runs in flight) on one world,
# counted by callgrind: (Ir at RUNS runs - Ir at 0 runs) / (RUNS * 3). The 0-run process pays
# the same start-up (imports, the engine's start and exit), so the difference is the steps'
# own cost. Counts do not depend on the machine's load (stable to ~0.5 %), so they compare
# commits on a shared machine where timings do not; `perf` has no hardware counters here.
#
#   tools/instructions-per-step.sh                 # memory world, 600 runs
#   tools/instructions-per-step.sh file 300        # another world, another size
#   PYTHON=/path/to/python tools/instructions-per-step.sh   # another checkout's venv
#
# Needs valgrind. Takes a few minutes (valgrind runs the process ~50x slower).
set -euo pipefail
world="${1:-memory}"
runs="${2:-600}"
steps=3
python="${PYTHON:-.venv/bin/python}"
command -v valgrind >/dev/null || { echo "instructions-per-step: valgrind is not installed" >&2; exit 2; }

count() {  # the Ir total of one benchmarks.cost process with $1 runs
  local out
  out="$(mktemp)"
  PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$python" -m benchmarks.cost --world "$world" --runs "$1" --steps "$steps" \
    >/dev/null 2>"$out" || { cat "$out" >&2; rm -f "$out"; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out"
  rm -f "$out"
}

base="$(count 0)"
total="$(count "$runs")"
per_step=$(( (total - base) / (runs * steps) ))
echo "world=$world runs=$runs steps/run=$steps Ir(0 runs)=$base Ir($runs runs)=$total"
echo "instructions per step: $per_step"
