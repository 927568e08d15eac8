#!/usr/bin/env bash
# Autoscaling timeline: the node autoscaling test (tests/deploy/node_autoscaling.rs) on a
# real one-node cluster, its timeline rendered as a markdown table and an SVG plot.
#
# Under a machine-wide lock (scripts/node.sh runs one node per machine): images built
# (scripts/image.sh build, unless SKIP_IMAGE_BUILD=1) and imported, `scripts/node.sh up`
# with the HPA controller reconciling every 5 s (SITG_CP_HPA_SYNC_PERIOD), the test run
# with SITG_AUTOSCALING_TIMELINE set, the node taken down and checked clean. The test
# samples every 5 s the average sitg_bot_outbox_lag_seconds the HPA sees, the HPA's
# desired/current replicas, the Ready pods and the actions done per second.
#
# Usage: scripts/bench/autoscaling.sh [OUT_DIR]
#   OUT_DIR (default docs/img) receives autoscaling-timeline.json, autoscaling-timeline.md
#   (the table) and autoscaling-timeline.svg (the plot).
# Env:   IMAGE_TAG (scripts/image.sh's), SKIP_IMAGE_BUILD=1, SITG_NODE_LOCK (lock file,
#        default /run/lock/sitg-node.lock), SITG_CP_HPA_SYNC_PERIOD (default 5s),
#        CARGO_TARGET_DIR, KEEP_RUN_DIR=1
# Needs: what scripts/node.sh and scripts/metrics-stack.sh need (root, containerd, go
#        caches), python3.
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/lib.sh"

OUT_DIR="${1:-$REPO_DIR/docs/img}"
LOCK="${SITG_NODE_LOCK:-/run/lock/sitg-node.lock}"
export SITG_CP_HPA_SYNC_PERIOD="${SITG_CP_HPA_SYNC_PERIOD:-5s}"
need python3 flock podman
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd -P)"
cd "$REPO_DIR" || exit 1

if [[ -z "${SKIP_IMAGE_BUILD:-}" ]]; then
	log "scripts/image.sh build"
	scripts/image.sh build >&2
fi
scripts/metrics-stack.sh build >&2
log "building the deploy test binary"
nice cargo test --features external-tests --test deploy --no-run >&2
export SITG_TEST_IMAGE SITG_TEST_SANDBOX_IMAGE
SITG_TEST_IMAGE="$(scripts/image.sh name sitg-bot)"
SITG_TEST_SANDBOX_IMAGE="$(scripts/image.sh name sitg-sandbox)"
export SITG_AUTOSCALING_TIMELINE="$RUN_DIR/timeline.json"

log "waiting for the node lock $LOCK"
# shellcheck disable=SC2016 # the inner script expands its own variables
flock "$LOCK" bash -c '
set -euo pipefail
node="$1"
trap "scripts/node.sh down $node >/dev/null 2>&1 || true" EXIT
scripts/node.sh up "$node" >/dev/null
for which in sitg-bot sitg-sandbox; do
	scripts/image.sh archive "$which" "$node/$which.tar"
	scripts/node.sh import "$node" "$node/$which.tar" >/dev/null
	rm -f "$node/$which.tar"
done
rc=0
SITG_TEST_NODE_ENV="$node/env" nice cargo test --features external-tests --test deploy \
	node_autoscaling -- --nocapture >&2 || rc=$?
scripts/node.sh down "$node" >/dev/null 2>&1 || true
trap - EXIT
scripts/node.sh check-clean >&2 || rc=$?
exit $rc
' _ "$RUN_DIR/node"

cp "$SITG_AUTOSCALING_TIMELINE" "$OUT_DIR/autoscaling-timeline.json"
python3 "$BENCH_DIR/autoscaling-render.py" "$OUT_DIR/autoscaling-timeline.json" \
	"$OUT_DIR/autoscaling-timeline.md" "$OUT_DIR/autoscaling-timeline.svg"
log "table: $OUT_DIR/autoscaling-timeline.md, plot: $OUT_DIR/autoscaling-timeline.svg"
cat "$OUT_DIR/autoscaling-timeline.md"
