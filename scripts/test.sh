#!/usr/bin/env bash
# Runs every test: format and lint checks, unit and property tests, the replay of recorded
# workflow histories, and the end-to-end tests against a real Temporal dev server (installed
# into .tools/ by scripts/install-temporal.sh). With SELLWINDOW_TEST_POSTGRES_URL set (e.g.
# postgres://postgres@127.0.0.1:5432/postgres), the end-to-end tests run a second time on
# PostgreSQL, each test in a fresh database.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export TEMPORAL_BIN="$(bash scripts/install-temporal.sh)"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== tests (SQLite)"
cargo test --workspace -- --test-threads 2

echo "== bench smoke run (tiny, SQLite)"
cargo run -q -p sellwindow-bench -- smoke

if [ -n "${SELLWINDOW_TEST_POSTGRES_URL:-}" ]; then
  echo "== end-to-end tests (PostgreSQL)"
  cargo test -p sellwindow-starter --test e2e -- --test-threads 2
else
  echo "== PostgreSQL end-to-end tests skipped: SELLWINDOW_TEST_POSTGRES_URL is not set"
fi
