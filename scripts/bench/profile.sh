#!/usr/bin/env bash
# Where the worker's CPU time goes: samples the pinned worker under load.
#
#   scripts/bench/profile.sh webhook   wrk load as in webhook-throughput.sh (RATE-free)
#   scripts/bench/profile.sh outbox    the outbox benchmark's load (outbox.sh)
#
# Uses `perf record -e cpu-clock` (a software clock: works on VMs whose PMU counters
# are "not supported") with DWARF call graphs, and prints the flat profile (self time
# by symbol) and the inclusive one of the top frames. With PROFILER=callgrind, runs the
# worker under valgrind --tool=callgrind instead (instruction counts; repeatable under
# load, ~50x slower) and prints callgrind_annotate's summary.
#
# Env: DURATION (15), CONNECTIONS (32), ACTIONS (500, outbox), PROFILER (perf|callgrind),
#      KEEP_RUN_DIR=1 keeps perf.data / callgrind.out.
# Output: text report on stdout.
source "$(dirname "$0")/lib.sh"

MODE="${1:-webhook}"
DURATION="${DURATION:-15}"
CONNECTIONS="${CONNECTIONS:-32}"
ACTIONS="${ACTIONS:-500}"
PROFILER="${PROFILER:-perf}"
need taskset curl openssl python3
build_release

# Runs the worker under the profiler: like start_worker, with a wrapper.
start_profiled_worker() {
	local -a env
	mapfile -t env <"$SANDBOX_ENV"
	env+=("$@")
	local port
	port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
	env+=("PORT=$port")
	local -a wrapper
	case "$PROFILER" in
	perf) wrapper=(perf record -e cpu-clock -F 999 --call-graph dwarf,32768 -o "$RUN_DIR/perf.data" --) ;;
	callgrind) wrapper=(valgrind --tool=callgrind --callgrind-out-file="$RUN_DIR/callgrind.out" --) ;;
	strace) wrapper=(strace -f -c -o "$RUN_DIR/strace.txt" --) ;;
	*) die "PROFILER must be perf, callgrind or strace" ;;
	esac
	env -i PATH="$PATH" "${env[@]}" taskset -c "$WORKER_CPU" "${wrapper[@]}" "$BIN" worker \
		>>"$RUN_DIR/worker.log" 2>>"$RUN_DIR/worker.err" &
	WORKER_PID=$!
	WORKER_URL="http://127.0.0.1:$port"
	local i
	for i in $(seq 1 600); do
		curl -fsS -o /dev/null "$WORKER_URL/readyz" 2>/dev/null && return 0
		sleep 0.1
	done
	die "the profiled worker never became ready: $(tail -5 "$RUN_DIR/worker.err")"
}

case "$MODE" in
webhook)
	need wrk
	write_opened_body "$RUN_DIR/body.json" 25000
	start_sandbox --no-enqueue
	SIGNATURE="$(sign_file "$(sandbox_var GITHUB_WEBHOOK_SECRET)" "$RUN_DIR/body.json")"
	start_profiled_worker OUTBOX_POLLING_ENABLED=false
	taskset -c "$LOAD_CPU" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" \
		-s "$BENCH_DIR/webhook.lua" "$WORKER_URL/webhooks/github" \
		-- "$RUN_DIR/body.json" "$SIGNATURE" "prof-$$" >&2
	;;
outbox)
	start_sandbox --github-latency-ms 20 --actions "$ACTIONS"
	start_profiled_worker OUTBOX_POLL_INTERVAL_MS=500 WORKER_ID="profile-$$"
	while :; do
		n="$(curl -fsS "$CONTROL_URL/stats" | python3 -c 'import json,sys; o=json.load(sys.stdin)["outbox"]; print(o["done"]+o["failed"])')"
		[[ "$n" -ge "$ACTIONS" ]] && break
		sleep 0.2
	done
	;;
*) die "usage: $0 webhook|outbox" ;;
esac

# A graceful stop of the worker ends the recording: perf runs it as its child,
# valgrind inside its own process.
target="$WORKER_PID"
if [[ "$PROFILER" == perf || "$PROFILER" == strace ]]; then
	target="$(pgrep -P "$WORKER_PID" | head -1)"
fi
kill -INT "$target"
wait "$WORKER_PID" || true

case "$PROFILER" in
perf)
	echo "== self time by symbol (top 40) =="
	perf report -i "$RUN_DIR/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
		grep -E '^ +[0-9.]+%' | sed -E 's/ {2,}-? +-? *$//; s/ +$//' | head -40
	echo
	echo "== inclusive time by symbol (top 60) =="
	perf report -i "$RUN_DIR/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
		grep -E '^ +[0-9.]+%' | sed -E 's/ {2,}-? +-? *$//; s/ +$//' |
		grep -vE 'inlined|closure_env|catch_unwind|do_call|call_once|poll_future|poll_inner|__rust_begin|start_thread|clone3|Scoped|blocking::pool|raw::poll|run_task|harness' |
		head -60
	echo
	echo "== by object (kernel, libc, the binary) =="
	perf report -i "$RUN_DIR/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | sed -E 's/ +$//' 
	;;
callgrind)
	callgrind_annotate "$RUN_DIR/callgrind.out" 2>/dev/null | head -80
	;;
strace)
	cat "$RUN_DIR/strace.txt"
	;;
esac
