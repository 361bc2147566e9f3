#!/usr/bin/env bash
# Runs every test: format and lint checks, unit and property tests, the replay of recorded
# workflow histories, and the end-to-end tests against a real Temporal dev server (installed
# into .tools/ by scripts/install-temporal.sh), once on SQLite (the embedded default) and, with
# SELLWINDOW_TEST_POSTGRES_URL set (e.g. postgres://postgres@127.0.0.1:5432/postgres), once
# more on PostgreSQL, each test in a fresh database. SELLWINDOW_TEST_POSTGRES=require makes a
# missing or unreachable PostgreSQL a failure instead of a skipped pass (CI sets it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export TEMPORAL_BIN="$(bash scripts/install-temporal.sh)"

postgres_url="${SELLWINDOW_TEST_POSTGRES_URL:-}"
if [ "${SELLWINDOW_TEST_POSTGRES:-}" = "require" ]; then
  if [ -z "$postgres_url" ]; then
    echo "SELLWINDOW_TEST_POSTGRES=require but SELLWINDOW_TEST_POSTGRES_URL is not set" >&2
    exit 1
  fi
  if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -d "$postgres_url" -q; then
    echo "SELLWINDOW_TEST_POSTGRES=require but PostgreSQL at $postgres_url does not answer" >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# PostgreSQL-only tests (a database outage) run in the PostgreSQL pass.
postgres_only=(--skip faults::activities_retry_through_database_outages)

echo "== tests, end-to-end on SQLite"
env -u SELLWINDOW_TEST_POSTGRES_URL SELLWINDOW_TEST_STORE=sqlite \
  cargo test --workspace -- --test-threads 2 "${postgres_only[@]}"

echo "== bench smoke run (tiny, SQLite)"
env -u SELLWINDOW_TEST_POSTGRES_URL cargo run -q -p sellwindow-bench -- smoke

if [ -n "$postgres_url" ]; then
  echo "== store and end-to-end tests on PostgreSQL"
  cargo test -p sellwindow-store --test store
  SELLWINDOW_TEST_STORE=postgres cargo test -p sellwindow-starter --test e2e -- --test-threads 2
else
  echo "== PostgreSQL end-to-end tests skipped: SELLWINDOW_TEST_POSTGRES_URL is not set"
fi
