#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (engine/ -> worldflow, worlds/ ->
# worldflow.worlds), so build a throwaway tree of symlinks with the installed layout and
# check that, plus the tests, benchmarks and examples that import it.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.typecheck
rm -rf "$tree"
mkdir -p "$tree/worldflow"
for f in engine/*; do
  ln -s "../../$f" "$tree/worldflow/$(basename "$f")"
done
ln -s ../../worlds "$tree/worldflow/worlds"
ln -s ../../inspector "$tree/worldflow/inspector"
export MYPYPATH="$tree"
mypy="${MYPY:-.venv/bin/mypy}"
"$mypy" -p worldflow "$@"
"$mypy" --explicit-package-bases tests benchmarks examples "$@"
