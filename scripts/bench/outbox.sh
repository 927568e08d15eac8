#!/usr/bin/env bash
# Outbox throughput: ACTIONS UPSERT_PR_COMMENT actions waiting in the backend
# simulator, GitHub answering every request after GITHUB_LATENCY_MS, WORKERS worker
# processes (distinct WORKER_IDs, all pinned to WORKER_CPU) with OUTBOX_CLAIM_LIMIT.
#
# Per run (fresh simulators and workers): actions/s from the workers' start until the
# last action is DONE, GitHub requests per action (all requests, token mints and
# installation look-ups included; and the installation-token API calls alone), token
# mints per action, claims, replays the backend refused, workers' CPU. Then medians
# with min–max.
#
# The backend refuses a second claim by one worker id within the same second (the
# signature is single-use and its timestamp has one-second resolution, contract §1.1,
# §1.6), so one worker claims at most OUTBOX_CLAIM_LIMIT actions per second.
#
# Usage: scripts/bench/outbox.sh
#        WORKERS=8 ACTIONS=2000 scripts/bench/outbox.sh
# Env:   RUNS (3), ACTIONS (500), WORKERS (1), CLAIM_LIMIT (25), GITHUB_LATENCY_MS (20),
#        CONCURRENCY (OUTBOX_CONCURRENCY, default the worker's 16), WORKER_CPU, LOAD_CPU
# Output: one JSON line per run, then {"summary": ...}.
source "$(dirname "$0")/lib.sh"

RUNS="${RUNS:-3}"
ACTIONS="${ACTIONS:-500}"
WORKERS="${WORKERS:-1}"
CLAIM_LIMIT="${CLAIM_LIMIT:-25}"
GITHUB_LATENCY_MS="${GITHUB_LATENCY_MS:-20}"
CONCURRENCY="${CONCURRENCY:-}"
need taskset curl python3
build_release
log "machine: $(machine_json)"

stats() { curl -fsS "$CONTROL_URL/stats"; }

: >"$RUN_DIR/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
	start_sandbox --github-latency-ms "$GITHUB_LATENCY_MS" --actions "$ACTIONS"
	pids=()
	extra=(OUTBOX_CLAIM_LIMIT="$CLAIM_LIMIT" OUTBOX_POLL_INTERVAL_MS=500)
	[[ -n "$CONCURRENCY" ]] && extra+=(OUTBOX_CONCURRENCY="$CONCURRENCY")
	started="$(date +%s.%N)"
	for w in $(seq 1 "$WORKERS"); do
		start_worker WORKER_ID="bench-outbox-$$-$run-$w" "${extra[@]}"
		pids+=("$WORKER_PID")
	done
	ticks_before=0
	for pid in "${pids[@]}"; do ticks_before=$((ticks_before + $(cpu_ticks "$pid"))); done
	while :; do
		done_count="$(stats | python3 -c 'import json,sys; o=json.load(sys.stdin)["outbox"]; print(o["done"]+o["failed"])')"
		[[ "$done_count" -ge "$ACTIONS" ]] && break
		sleep 0.05
	done
	ended="$(date +%s.%N)"
	ticks_after=0
	for pid in "${pids[@]}"; do ticks_after=$((ticks_after + $(cpu_ticks "$pid"))); done
	stats >"$RUN_DIR/stats-$run.json"
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	stop_pid "$SANDBOX_PID"
	python3 - "$RUN_DIR/stats-$run.json" "$run" "$ACTIONS" "$started" "$ended" \
		"$ticks_before" "$ticks_after" "$CLK_TCK" <<'PY' | tee -a "$RUN_DIR/runs.jsonl"
import json, sys
path, run, actions, s0, s1, t0, t1, tck = sys.argv[1:]
s = json.load(open(path))
n = int(actions)
wall = float(s1) - float(s0)
gh, be = s["github"], s["backend"]
print(json.dumps({
    "run": int(run),
    "actions": n,
    "failed": s["outbox"]["failed"],
    "seconds": round(wall, 3),
    "actions_per_s": round(n / wall, 2),
    "github_requests_per_action": round(gh["total_requests"] / n, 3),
    "github_api_requests_per_action": round(gh["api_requests"] / n, 3),
    "token_mints_per_action": round(gh["token_mints"] / n, 4),
    "claims": be["claims"],
    "empty_claims": be["empty_claims"],
    "replays_rejected": be["replays_rejected"],
    "worker_cpu_percent": round(100 * (int(t1) - int(t0)) / int(tck) / wall, 1),
}))
PY
	log "run $run: $(tail -1 "$RUN_DIR/runs.jsonl")"
done

summary="$(summarise actions_per_s github_requests_per_action github_api_requests_per_action \
	token_mints_per_action worker_cpu_percent <"$RUN_DIR/runs.jsonl")"
printf '{"benchmark":"outbox","actions":%s,"workers":%s,"claim_limit":%s,"github_latency_ms":%s,"machine":%s,"summary":%s}\n' \
	"$ACTIONS" "$WORKERS" "$CLAIM_LIMIT" "$GITHUB_LATENCY_MS" "$(machine_json)" "$summary"
