#!/usr/bin/env bash
# Maximum webhook throughput and memory: wrk with a pre-signed 25 KB pull_request.opened
# delivery (distinct X-GitHub-Delivery per request), CONNECTIONS connections, against
# one worker pinned to WORKER_CPU with the simulators answering at once; wrk and the
# simulators on LOAD_CPU.
#
# Per run (a fresh worker each): requests/s, wrk's latency percentiles, non-2xx
# answers, worker CPU (utime+stime from /proc/PID/stat, % of one core), VmRSS idle
# (before the load) and VmHWM (peak, after it). Then medians with min–max.
#
# Usage: scripts/bench/webhook-throughput.sh
# Env:   RUNS (3), DURATION seconds (20), CONNECTIONS (32), THREADS (wrk threads, 1:
#        the generator has one core; a second thread there only adds scheduling
#        delays that show as tail latency),
#        WORKER_CPU (0), LOAD_CPU (1), CARGO_TARGET_DIR, KEEP_RUN_DIR=1
# Output: one JSON line per run, then {"summary": ...}.
source "$(dirname "$0")/lib.sh"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
need wrk taskset curl openssl python3
build_release
write_opened_body "$RUN_DIR/body.json" 25000
log "machine: $(machine_json)"

start_sandbox --no-enqueue
SIGNATURE="$(sign_file "$(sandbox_var GITHUB_WEBHOOK_SECRET)" "$RUN_DIR/body.json")"

parse_wrk() {
	python3 - "$1" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
out = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
lat = {}
for q, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
    lat["p" + q] = round(ms(v, unit), 3)
out["latency_ms"] = lat
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
out["non_2xx"] = int(m.group(1)) if m else 0
m = re.search(r"(\d+) requests in", text)
out["requests"] = int(m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
out["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
print(json.dumps(out))
PY
}

: >"$RUN_DIR/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
	start_worker OUTBOX_POLLING_ENABLED=false
	sleep 2
	idle_kib="$(mem_kib "$WORKER_PID" VmRSS)"
	ticks_before="$(cpu_ticks "$WORKER_PID")"
	started="$(date +%s.%N)"
	taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
		-s "$BENCH_DIR/webhook.lua" "$WORKER_URL/webhooks/github" \
		-- "$RUN_DIR/body.json" "$SIGNATURE" "wrk-$$-$run" >"$RUN_DIR/wrk-$run.txt"
	ended="$(date +%s.%N)"
	ticks_after="$(cpu_ticks "$WORKER_PID")"
	peak_kib="$(mem_kib "$WORKER_PID" VmHWM)"
	after_kib="$(mem_kib "$WORKER_PID" VmRSS)"
	stop_pid "$WORKER_PID"
	python3 - "$(parse_wrk "$RUN_DIR/wrk-$run.txt")" "$run" "$idle_kib" "$peak_kib" "$after_kib" \
		"$ticks_before" "$ticks_after" "$started" "$ended" "$CLK_TCK" <<'PY' | tee -a "$RUN_DIR/runs.jsonl"
import json, sys
wrk = json.loads(sys.argv[1])
run, idle, peak, after, t0, t1, s0, s1, tck = sys.argv[2:]
wall = float(s1) - float(s0)
cpu_s = (int(t1) - int(t0)) / int(tck)
wrk.update({
    "run": int(run),
    "worker_cpu_percent": round(100 * cpu_s / wall, 1),
    "worker_cpu_us_per_request": round(1e6 * cpu_s / max(wrk["requests"], 1), 1),
    "rss_idle_mb": round(int(idle) / 1024, 2),
    "rss_peak_mb": round(int(peak) / 1024, 2),
    "rss_after_mb": round(int(after) / 1024, 2),
})
print(json.dumps(wrk))
PY
	log "run $run: $(tail -1 "$RUN_DIR/runs.jsonl")"
done

summary="$(summarise requests_per_s latency_ms.p50 latency_ms.p99 worker_cpu_percent \
	worker_cpu_us_per_request rss_idle_mb rss_peak_mb non_2xx <"$RUN_DIR/runs.jsonl")"
printf '{"benchmark":"webhook_throughput","connections":%s,"duration_s":%s,"body_bytes":%s,"machine":%s,"summary":%s}\n' \
	"$CONNECTIONS" "$DURATION" "$(stat -c %s "$RUN_DIR/body.json")" "$(machine_json)" "$summary"
