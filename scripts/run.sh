#!/usr/bin/env bash
# Runs the whole system locally on the embedded defaults: installs the pinned Temporal CLI if
# missing, starts its dev server (SQLite persistence under data/, web UI on :8233), the worker
# and the API, then plays the main flow as a demo. Ctrl-C stops everything.
#   scripts/run.sh          # stack + demo, then keeps running
#   scripts/run.sh --no-demo
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
temporal="$(bash scripts/install-temporal.sh)"
mkdir -p data
export DATABASE_URL="${DATABASE_URL:-sqlite://data/sellwindow.db?mode=rwc}"
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-http://127.0.0.1:7233}"

cargo build --bin worker --bin starter
bin="${CARGO_TARGET_DIR:-target}/debug"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$temporal" server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233 \
  --db-filename data/temporal.db --log-level warn \
  --search-attribute SellWindowId=Keyword --search-attribute ProductId=Keyword \
  --search-attribute ListingPhase=Keyword > data/temporal.log 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  "$temporal" operator cluster health --address 127.0.0.1:7233 >/dev/null 2>&1 && break
  sleep 1
done

"$bin/worker" > data/worker.log 2>&1 &
pids+=($!)
"$bin/starter" serve > data/api.log 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do curl -fs http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break; sleep 0.5; done

echo "Shop         http://127.0.0.1:8080/  (sign in at /signin with any customer name)"
echo "Admin        http://127.0.0.1:8080/admin  (sign in at /signin as the admin)"
echo "Temporal UI  http://localhost:8233"
echo "gRPC API     127.0.0.1:50051 (reflection on; tokens: $bin/starter token --admin)"
echo "HTTP         http://127.0.0.1:8080 (payment callback, sandbox, /healthz, /metrics)"
echo "Logs         data/{temporal,worker,api}.log"
if [ "${1:-}" != "--no-demo" ]; then
  "$bin/starter" demo
fi
echo "Running. Ctrl-C to stop."
wait
