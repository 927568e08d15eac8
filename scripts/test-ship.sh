#!/usr/bin/env bash
# test-ship.sh — every check of what ships: the Helm chart, the container image recipe,
# the systemd unit and env examples, key provisioning, the monitoring rules and the
# docs. Exits non-zero on any failure; the last line is "N passed, M failed".
#
# Checks:
#   ShellCheck       the project's shell scripts (deploy/scripts, scripts/*-ship*.sh)
#   tests/deploy (`cargo test --features external-tests --test deploy`), its modules:
#   chart_render     helm lint --strict; helm template default / namespaced / all-features
#                    checked field by field and against the operator's builders; schema
#                    refusals; promtool check/test of the alerts and the adapter rule;
#                    NetworkPolicies against the operator's pods; README against helm-docs
#   chart_install    its own control plane (scripts/control-plane.sh up/down): helm
#                    install/upgrade, the CRD upgrade through --apply-crd, the operator
#                    binary under the chart's ServiceAccount, examples/botfleet.yaml's
#                    children, helm test against the operator, namespace scope, bad
#                    values at install
#   artifacts        hadolint; systemd-analyze verify and security; env examples
#                    through the worker's config parser; docs paths and commands
#   provision_...    the provisioning script against throw-away PostgreSQL clusters
# Each cargo test counts as one check.
#
# Needs: cargo, the tools of scripts/install-ship-deps.sh, and helm/kubectl/etcd/
# kube-apiserver from scripts/control-plane.sh build (run here; instant when cached).
# Honours CARGO_TARGET_DIR and the tool overrides HELM, PROMTOOL, HADOLINT,
# SYSTEMD_ANALYZE, SITG_PG_BIN_DIR.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT" || exit 1

passed=0
failed=0
failures=()
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sitg-test-ship.XXXXXX")"

log() { printf '[test-ship] %s\n' "$*" >&2; }

# Runs "$@" as check $1, counting it and showing its output only on failure.
check() {
	local name="$1" start=$SECONDS
	shift
	if "$@" >"$LOG_DIR/$name.log" 2>&1; then
		passed=$((passed + 1))
		log "ok      $name ($((SECONDS - start))s)"
	else
		failed=$((failed + 1))
		failures+=("$name")
		log "FAILED  $name ($((SECONDS - start))s):"
		tail -n 60 "$LOG_DIR/$name.log" >&2
	fi
}

# Runs the cargo test targets "$@" and counts each test; a build failure counts as one.
cargo_tests() {
	local start=$SECONDS log="$LOG_DIR/cargo-test.log" targets=() target ok bad rc
	for target in "$@"; do targets+=(--test "$target"); done
	cargo test --locked --no-fail-fast --features external-tests "${targets[@]}" >"$log" 2>&1
	rc=$?
	ok="$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed;?$/) s += $(i - 1) } END { print s + 0 }' "$log")"
	bad="$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^failed;?$/) s += $(i - 1) } END { print s + 0 }' "$log")"
	passed=$((passed + ok))
	failed=$((failed + bad))
	grep -E '^test .* (ok|FAILED)$' "$log" | sed 's/^/[test-ship]   /' >&2
	if ((bad > 0)); then
		failures+=("cargo tests")
		grep -E -A40 '^---- .* stdout ----$' "$log" | head -n 200 >&2
	elif ((rc != 0)); then
		failed=$((failed + 1))
		failures+=("cargo test (build)")
		tail -n 60 "$log" >&2
	fi
	log "cargo tests: ${ok} passed, ${bad} failed ($((SECONDS - start))s)"
}

shellcheck_scripts() {
	shellcheck -x deploy/scripts/provision-service-bot-key.sh \
		scripts/test-ship.sh scripts/install-ship-deps.sh scripts/chart-readme.sh
}

start=$SECONDS
log "logs in ${LOG_DIR}"
if ! scripts/control-plane.sh build >"$LOG_DIR/control-plane-build.log" 2>&1; then
	log "scripts/control-plane.sh build failed:"
	tail -n 40 "$LOG_DIR/control-plane-build.log" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

check shellcheck shellcheck_scripts
cargo_tests deploy

log "done in $((SECONDS - start))s"
if ((failed > 0)); then
	log "failed: ${failures[*]} (logs in ${LOG_DIR})"
else
	rm -rf "$LOG_DIR"
fi
echo "${passed} passed, ${failed} failed"
((failed == 0))
