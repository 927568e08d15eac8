#!/usr/bin/env bash
# The README's run command: the worker fleet on local simulators, no account, no cluster.
# Fetches GitHub's example payloads once, builds, and runs `sitg-bot dev`; extra
# arguments go to `sitg-bot dev` (e.g. `--once`, `--port 0`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/sitg-bot/cargo-target}"
scripts/fetch-fixtures.sh
exec cargo run --quiet --locked -- dev "$@"
