#!/usr/bin/env bash
# Operator scale: FLEETS BotFleets in one namespace of a real API server
# (scripts/control-plane.sh: etcd, kube-apiserver, kube-controller-manager), then the
# operator (release build) started against them.
#
# Measures: seconds from the operator's start until every fleet's status has
# observedGeneration = generation (all children applied, in order, then status), with
# the children counted; the operator's VmRSS and VmHWM; then a second full pass (the
# operator restarted: its initial list reconciles every fleet again) and what it wrote:
# objects whose operator-managed fields (managedFields entry of field manager
# sitg-bot-operator) or resourceVersion changed, and the server-side-apply requests the
# API server counted (no-op applies included).
#
# Usage: scripts/bench/operator-scale.sh
# Env:   FLEETS (500), PLANE_DIR (default: a fresh directory), CARGO_TARGET_DIR,
#        KEEP_RUN_DIR=1 (keeps the plane's logs)
# Output: one JSON line.
source "$(dirname "$0")/lib.sh"

FLEETS="${FLEETS:-500}"
NS=scale
need python3 curl
build_release
PLANE_DIR="${PLANE_DIR:-$RUN_DIR/plane}"
log "starting the control plane in $PLANE_DIR"
SITG_CP_SERVICE_CIDR="${SITG_CP_SERVICE_CIDR:-10.0.0.0/20}" SITG_CP_OWNER_PID=$$ "$REPO_DIR/scripts/control-plane.sh" up "$PLANE_DIR" >&2
stop_plane() { "$REPO_DIR/scripts/control-plane.sh" down "$PLANE_DIR" >&2 || true; }
trap 'stop_plane; cleanup' EXIT
set -a
# shellcheck disable=SC1091
. "$PLANE_DIR/env"
set +a
KUBECTL="$SITG_KUBE_BIN_DIR/kubectl"
log "machine: $(machine_json)"

"$KUBECTL" apply --server-side -f "$REPO_DIR/crds/botfleet.yaml" >&2
"$KUBECTL" wait --for=condition=Established crd/botfleets.sitg.io --timeout=60s >&2
"$KUBECTL" create namespace "$NS" >&2
"$KUBECTL" -n "$NS" create secret generic bot \
	--from-literal=webhook=scale-webhook-secret \
	--from-literal=hmac=scale-hmac-secret \
	--from-literal=private-key="$(printf -- '-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n')" >&2

python3 - "$FLEETS" >"$RUN_DIR/fleets.json" <<'PY'
import json, sys
n = int(sys.argv[1])
items = [{
    "apiVersion": "sitg.io/v1alpha1",
    "kind": "BotFleet",
    "metadata": {"name": f"fleet-{i:04d}"},
    "spec": {
        "image": {"repository": "ghcr.io/sitg/sitg-bot", "tag": "0.0.0-scale"},
        "github": {
            "appId": 4242,
            "webhookSecretRef": {"name": "bot", "key": "webhook"},
            "privateKeyRef": {"name": "bot", "key": "private-key"},
        },
        "backend": {
            "baseUrl": "https://sitg.example",
            "botKeyId": f"bck_scale_{i}",
            "hmacSecretRef": {"name": "bot", "key": "hmac"},
        },
        "replicas": 2,
    },
} for i in range(n)]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
log "creating $FLEETS BotFleets"
"$KUBECTL" -n "$NS" apply --server-side -f "$RUN_DIR/fleets.json" >/dev/null

METRICS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
start_operator() {
	"$BIN" operator --namespace "$NS" --lease-namespace "$NS" \
		--metrics-addr "127.0.0.1:$METRICS_PORT" >>"$RUN_DIR/operator.log" 2>&1 &
	OPERATOR_PID=$!
	STARTED_PIDS+=("$OPERATOR_PID")
}
reconciles() {
	curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
		awk '$1 == "sitg_bot_operator_reconciles_total" {print $2}' || true
}
# Server-side-apply requests counted by the API server so far.
apply_requests() {
	"$KUBECTL" get --raw /metrics | python3 -c '
import re, sys
total = 0
for line in sys.stdin:
    if line.startswith("apiserver_request_total{") and "verb=\"APPLY\"" in line:
        total += float(line.rsplit(" ", 1)[1])
print(int(total))'
}
# Fleets whose status has caught up with their generation.
fleets_applied() {
	"$KUBECTL" -n "$NS" get botfleets -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for f in items
          if (f.get("status") or {}).get("observedGeneration") == f["metadata"]["generation"]))'
}
# Per object: resourceVersion and the operator`s own managedFields entries.
snapshot() {
	"$KUBECTL" -n "$NS" get botfleets,deployments,services,poddisruptionbudgets,horizontalpodautoscalers,secrets \
		--show-managed-fields -o json | python3 -c '
import json, sys
out = {}
for o in json.load(sys.stdin)["items"]:
    m = o["metadata"]
    own = [e for e in m.get("managedFields", []) if e.get("manager") == "sitg-bot-operator"]
    out[o["kind"] + "/" + m["name"]] = {"rv": m["resourceVersion"], "own": own}
print(json.dumps(out))'
}
# Waits until the reconcile counter reaches $1 and then stays put for 5 s.
wait_quiet() {
	local want="$1" last="" same=0 now
	while :; do
		now="$(reconciles)"
		if [[ -n "$now" ]] && python3 -c "import sys; sys.exit(0 if float('$now') >= $want else 1)"; then
			if [[ "$now" == "$last" ]]; then
				same=$((same + 1))
				[[ $same -ge 5 ]] && return 0
			else
				same=0
			fi
		fi
		last="$now"
		sleep 1
	done
}

log "first pass: operator started"
t0="$(date +%s.%N)"
start_operator
while :; do
	applied="$(fleets_applied)"
	[[ "$applied" -ge "$FLEETS" ]] && break
	kill -0 "$OPERATOR_PID" 2>/dev/null || die "the operator exited: $(tail -5 "$RUN_DIR/operator.log")"
	sleep 0.5
done
t_applied="$(date +%s.%N)"
children="$("$KUBECTL" -n "$NS" get deployments,services,poddisruptionbudgets,secrets --no-headers | wc -l)"
rss_applied="$(mem_kib "$OPERATOR_PID" VmRSS)"
log "all $FLEETS fleets applied; waiting for the first pass to go quiet"
wait_quiet "$FLEETS"
first_reconciles="$(reconciles)"
rss_first="$(mem_kib "$OPERATOR_PID" VmRSS)"
hwm_first="$(mem_kib "$OPERATOR_PID" VmHWM)"
cpu_first="$(cpu_ticks "$OPERATOR_PID")"
stop_pid "$OPERATOR_PID"
# Let the kube-controller-manager finish reacting (ReplicaSets, Pods, Deployment status).
sleep 10
snapshot >"$RUN_DIR/before.json"

log "second pass: operator restarted (its initial list reconciles every fleet)"
applies_before="$(apply_requests)"
start_operator
wait_quiet "$FLEETS"
second_reconciles="$(reconciles)"
rss_second="$(mem_kib "$OPERATOR_PID" VmRSS)"
hwm_second="$(mem_kib "$OPERATOR_PID" VmHWM)"
applies_after="$(apply_requests)"
snapshot >"$RUN_DIR/after.json"
stop_pid "$OPERATOR_PID"

python3 - "$RUN_DIR/before.json" "$RUN_DIR/after.json" <<PY
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
own_changed, rv_changed = {}, {}
for key, b in before.items():
    a = after.get(key)
    kind = key.split("/")[0]
    if a is None:
        own_changed[kind] = own_changed.get(kind, 0) + 1
        continue
    if a["own"] != b["own"]:
        own_changed[kind] = own_changed.get(kind, 0) + 1
    if a["rv"] != b["rv"]:
        rv_changed[kind] = rv_changed.get(kind, 0) + 1
created = [k for k in after if k not in before]
print(json.dumps({
    "benchmark": "operator_scale",
    "fleets": $FLEETS,
    "machine": $(machine_json),
    "first_pass": {
        "seconds_to_all_applied": round($t_applied - $t0, 2),
        "children_counted": $children,
        "reconciles": float("$first_reconciles"),
        "operator_rss_mb_when_applied": round($rss_applied / 1024, 1),
        "operator_rss_mb_after": round($rss_first / 1024, 1),
        "operator_peak_rss_mb": round($hwm_first / 1024, 1),
        "operator_cpu_s": round($cpu_first / $CLK_TCK, 2),
    },
    "second_pass": {
        "reconciles": float("$second_reconciles"),
        "objects_checked": len(before),
        "objects_with_operator_fields_changed": own_changed,
        "objects_created": len(created),
        "objects_with_resource_version_changed": rv_changed,
        "server_side_apply_requests": $applies_after - $applies_before,
        "operator_rss_mb": round($rss_second / 1024, 1),
        "operator_peak_rss_mb": round($hwm_second / 1024, 1),
    },
}))
PY
