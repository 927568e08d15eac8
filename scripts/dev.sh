#!/usr/bin/env bash
# The README's run command: the worker fleet on local simulators, no account, no cluster.
# Fetches GitHub's example payloads once, builds, and runs `sitg-bot dev`; extra
# arguments go to `sitg-bot dev` (e.g. `--once`, `--port 0`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cache.sh
. scripts/lib/cache.sh
scripts/fetch-fixtures.sh
echo "[dev] building sitg-bot (the first build takes a few minutes)..." >&2
cargo build --quiet --locked
exec "$CARGO_TARGET_DIR/debug/sitg-bot" dev "$@"
