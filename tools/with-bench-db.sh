#!/usr/bin/env bash
# Run a command with WORLDFLOW_BENCH_POSTGRES_URL set to a fresh PostgreSQL database, dropped
# afterwards, so `make bench` measures the postgres world beside the others. Left alone when
# the variable is already set, or when no server answers on 127.0.0.1:5432 (the suite then
# notes that it skipped postgres). Each workload makes its own schema in that database.
set -euo pipefail
if [[ -n "${WORLDFLOW_BENCH_POSTGRES_URL:-}" ]] || ! command -v pg_isready >/dev/null 2>&1 \
  || ! pg_isready -q -h 127.0.0.1 -p 5432; then
  exec "$@"
fi
db="worldflow_bench_$$_$(date +%s)"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
trap 'psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
export WORLDFLOW_BENCH_POSTGRES_URL="postgresql://postgres@127.0.0.1:5432/$db"
"$@"
