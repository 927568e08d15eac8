#!/usr/bin/env bash
# The README's test command: every test of the project, from a fresh machine.
#
#   scripts/test.sh
#
# 1. installs what the tests need (cached in fixed folders outside the clone, so later
#    runs take seconds): Debian packages (PostgreSQL, promtool, systemd-analyze and
#    the shell linter) and hadolint, GitHub's example payloads (npm), etcd / kube-apiserver /
#    kube-controller-manager / kubectl / helm / helm-docs built from their Go modules;
# 2. checks shell scripts, formatting and clippy (warnings are errors);
# 3. starts a real control plane on loopback and runs
#    `cargo test --workspace --features external-tests`: unit tests and the simulators'
#    tests, worker and outbox end to end (what plain `cargo test` runs too), plus what
#    the feature turns on: the operator on the real API server, the Helm chart (lint,
#    template, install), the image recipe, systemd units and key provisioning against a
#    real PostgreSQL; then stops the control plane;
# 4. unless SITG_TEST_NODE=0: builds the images (scripts/image.sh) and runs the fleet on a
#    real one-node cluster (scripts/node.sh) in the same cargo test run
#    (tests/deploy/node_e2e.rs; node_rollout.rs rolls it to a second image, scripts/image.sh
#    next, under load; node_autoscaling.rs has the HPA scale a fleet on outbox lag), then
#    checks the node left nothing behind.
#
# Environment: CARGO_TARGET_DIR (default /var/cache/sitg-bot/cargo-target),
# SITG_CARGO_TARGET_MAX_GB (default 30: past it the target dir is cleaned first),
# SITG_TOOLS_DIR, SITG_FIXTURES_DIR (see the scripts they go to).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# shellcheck source=scripts/lib/cache.sh
. scripts/lib/cache.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }
started=$SECONDS

step "system packages: PostgreSQL, promtool, systemd-analyze, shellcheck, hadolint"
scripts/install-ship-deps.sh

step "fixtures: GitHub's example payloads"
scripts/fetch-fixtures.sh

step "control plane binaries (built once from Go modules, then cached)"
scripts/control-plane.sh build

step "helm-docs (built once from its Go module, then cached)"
scripts/chart-readme.sh install >/dev/null

step "metrics stack: Prometheus, prometheus-adapter (built once from Go modules), KEDA's CRDs"
scripts/metrics-stack.sh build

# The cargo target dir outlives every run and cargo never drops stale artifacts from it;
# past the limit it starts over, so a long-lived CI machine never fills its disk.
step "cargo cache: start over past ${SITG_CARGO_TARGET_MAX_GB:=30} GB"
if [[ -d "$CARGO_TARGET_DIR" ]]; then
	used_gb=$(($(du -sk "$CARGO_TARGET_DIR" | cut -f1) / 1024 / 1024))
	if ((used_gb > SITG_CARGO_TARGET_MAX_GB)); then
		echo "cargo target dir ${CARGO_TARGET_DIR} holds ${used_gb} GB: cargo clean" >&2
		cargo clean
	else
		echo "cargo target dir ${CARGO_TARGET_DIR}: ${used_gb} GB" >&2
	fi
fi

step "shellcheck"
shellcheck -x scripts/*.sh scripts/lib/*.sh deploy/scripts/*.sh .ci/run

step "cargo fmt --check"
cargo fmt --all -- --check

# Both ways the code is built: what plain `cargo test` compiles, and with the tests that
# need external tools.
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
step "cargo clippy --workspace --all-targets --features external-tests -- -D warnings"
cargo clippy --locked --workspace --all-targets --features external-tests -- -D warnings

step "build the tests"
cargo test --locked --workspace --features external-tests --no-run

step "start a control plane"
plane="$(mktemp -d /tmp/sitg-test-plane.XXXXXX)"
node=""
cleanup() {
	"$root/scripts/control-plane.sh" down "$plane" >/dev/null 2>&1 || true
	if [[ -n "$node" ]]; then "$root/scripts/node.sh" down "$node" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
SITG_CP_OWNER_PID=$$ scripts/control-plane.sh up "$plane"
set -a
# shellcheck disable=SC1091
. "$plane/env"
set +a
export SITG_TEST_KUBECONFIG="$plane/kubeconfig"

# The fleet on a real node (tests/deploy/node_e2e.rs): the images built from the
# Dockerfile, a one-node cluster, the images in its containerd. SITG_TEST_NODE=0 skips it
# on machines that cannot run a kubelet (the test then says it was skipped).
if [[ "${SITG_TEST_NODE:-1}" != 0 ]]; then
	step "images: scripts/image.sh build (base images and cargo caches kept between runs)"
	scripts/image.sh build
	# The second build the rollout test rolls the fleet and the operator to.
	scripts/image.sh next
	step "start a one-node cluster (scripts/node.sh)"
	node="$(mktemp -d /tmp/sitg-test-node.XXXXXX)"
	# The HPA controller reconciles every 5 s instead of 15 s: the autoscaling test
	# (tests/deploy/node_autoscaling.rs) then sees both scaling directions sooner.
	SITG_CP_HPA_SYNC_PERIOD=5s SITG_NODE_OWNER_PID=$$ scripts/node.sh up "$node" >/dev/null
	for which in sitg-bot sitg-bot-next sitg-sandbox; do
		scripts/image.sh archive "$which" "$node/$which.tar"
		scripts/node.sh import "$node" "$node/$which.tar" >/dev/null
		rm -f "$node/$which.tar"
	done
	SITG_TEST_NODE_ENV="$node/env"
	SITG_TEST_IMAGE="$(scripts/image.sh name sitg-bot)"
	SITG_TEST_IMAGE_NEXT="$(scripts/image.sh name sitg-bot-next)"
	SITG_TEST_SANDBOX_IMAGE="$(scripts/image.sh name sitg-sandbox)"
	export SITG_TEST_NODE_ENV SITG_TEST_IMAGE SITG_TEST_IMAGE_NEXT SITG_TEST_SANDBOX_IMAGE
fi

step "cargo test --workspace --features external-tests"
results="$plane/cargo-test.log"
cargo test --locked --workspace --features external-tests 2>&1 | tee "$results"

if [[ -n "$node" ]]; then
	step "stop the node: nothing may stay behind (scripts/node.sh check-clean)"
	scripts/node.sh down "$node"
	node=""
	scripts/node.sh check-clean
fi

step "done in $((SECONDS - started)) s"
# One closing line over every test binary (cargo prints one `test result:` per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i - 1); if ($i ~ /^failed;?$/) f += $(i - 1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$results"
