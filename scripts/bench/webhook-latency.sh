#!/usr/bin/env bash
# Webhook latency at fixed rates, open loop (benches/openloop.rs): requests leave on
# schedule whatever the answers do, latency counted from the scheduled send time (no
# coordinated omission). One worker pinned to WORKER_CPU, generator and simulators on
# LOAD_CPU, the backend simulator answering at once.
#
# Usage: scripts/bench/webhook-latency.sh            (rates 250 500 1000)
#        RATES="1000 2000" scripts/bench/webhook-latency.sh
# Env:   RUNS (3), DURATION seconds measured (20), WARMUP seconds (3), RATES,
#        WORKER_CPU, LOAD_CPU, CARGO_TARGET_DIR, KEEP_RUN_DIR=1
# Output: one JSON line per run, then one {"summary": ...} line per rate.
source "$(dirname "$0")/lib.sh"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
RATES="${RATES:-250 500 1000}"
need taskset curl openssl python3
build_release
log "cargo bench --bench openloop --no-run"
OPENLOOP="$(cd "$REPO_DIR" && cargo bench --bench openloop --no-run --message-format=json 2>/dev/null |
	python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "openloop" and msg.get("executable"):
        print(msg["executable"])
')"
[[ -x "$OPENLOOP" ]] || die "could not build benches/openloop.rs"
write_opened_body "$RUN_DIR/body.json" 25000
log "machine: $(machine_json)"

start_sandbox --no-enqueue
SIGNATURE="$(sign_file "$(sandbox_var GITHUB_WEBHOOK_SECRET)" "$RUN_DIR/body.json")"

for rate in $RATES; do
	: >"$RUN_DIR/runs-$rate.jsonl"
	for run in $(seq 1 "$RUNS"); do
		start_worker OUTBOX_POLLING_ENABLED=false
		sleep 1
		ticks_before="$(cpu_ticks "$WORKER_PID")"
		result="$(taskset -c "$LOAD_CPU" "$OPENLOOP" --url "$WORKER_URL/webhooks/github" \
			--body "$RUN_DIR/body.json" --signature "$SIGNATURE" --rate "$rate" \
			--duration "$DURATION" --warmup "$WARMUP" --delivery-prefix "ol-$$-$rate-$run")"
		ticks_after="$(cpu_ticks "$WORKER_PID")"
		peak_kib="$(mem_kib "$WORKER_PID" VmHWM)"
		curl -fsS "$WORKER_URL/metrics" >"$RUN_DIR/metrics-$rate-$run.txt"
		stop_pid "$WORKER_PID"
		python3 - "$result" "$run" "$ticks_before" "$ticks_after" "$CLK_TCK" "$DURATION" "$WARMUP" "$peak_kib" \
			"$RUN_DIR/metrics-$rate-$run.txt" <<'PY' | tee -a "$RUN_DIR/runs-$rate.jsonl"
import json, sys
r = json.loads(sys.argv[1])
run, t0, t1, tck, duration, warmup, peak, metrics = sys.argv[2:]
cpu_s = (int(t1) - int(t0)) / int(tck)
r["run"] = int(run)
# CPU over warm-up and measurement together, as a share of one core.
r["worker_cpu_percent"] = round(100 * cpu_s / (int(duration) + int(warmup)), 1)
r["rss_peak_mb"] = round(int(peak) / 1024, 2)
# The worker's own view (sitg_bot_webhook_duration_seconds, handler entry to answer,
# warm-up included): the bucket bound under which 99% of deliveries were answered.
buckets = []
for line in open(metrics):
    if line.startswith("sitg_bot_webhook_duration_seconds_bucket{"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
total = buckets[-1][1] if buckets else 0
r["handler_p99_at_most_ms"] = next((le * 1000 for le, n in buckets if total and n >= 0.99 * total), None)
print(json.dumps(r))
PY
		log "rate $rate run $run: $(tail -1 "$RUN_DIR/runs-$rate.jsonl")"
	done
	summary="$(summarise latency_ms.p50 latency_ms.p90 latency_ms.p99 latency_ms.p999 latency_ms.max \
		handler_p99_at_most_ms worker_cpu_percent failed <"$RUN_DIR/runs-$rate.jsonl")"
	printf '{"benchmark":"webhook_latency_open_loop","rate":%s,"duration_s":%s,"machine":%s,"summary":%s}\n' \
		"$rate" "$DURATION" "$(machine_json)" "$summary"
done
