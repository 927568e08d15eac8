#!/usr/bin/env bash
# The README's run command: the worker fleet on local simulators, no account, no cluster.
# Fetches GitHub's example payloads once, builds `sitg-bot` (the product binary) and
# `sitg-sandbox` (the simulators), and runs `sitg-sandbox dev`, which starts two
# `sitg-bot worker` processes in front of the simulators and prints the webhook secret
# and a command that signs a delivery of your own. Extra arguments go to
# `sitg-sandbox dev` (e.g. `--once`, `--port 0`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cache.sh
. scripts/lib/cache.sh
step() { printf '[dev] %s\n' "$*" >&2; }

step "fetching GitHub's example payloads (once; cached in ${SITG_FIXTURES_DIR})"
scripts/fetch-fixtures.sh
step "building sitg-bot and sitg-sandbox in ${CARGO_TARGET_DIR} (a first build takes several minutes; cargo shows its progress)"
cargo build --locked -p sitg-bot -p sitg-sandbox
step "starting sitg-sandbox dev $*"
exec "$CARGO_TARGET_DIR/debug/sitg-sandbox" dev --worker-bin "$CARGO_TARGET_DIR/debug/sitg-bot" "$@"
