# Shared by the scripts of scripts/bench: building, the sandbox (simulators) and the
# worker as separate processes pinned to cores, and readings from /proc.
# Sourced, not run. Every script prints machine-readable JSON lines on stdout and
# progress on stderr.
#
# Pinning (2-core machine): the worker alone on WORKER_CPU (default 0); the simulators
# and the load generator share LOAD_CPU (default 1).

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_DIR="$(cd "$BENCH_DIR/../.." && pwd -P)"
WORKER_CPU="${WORKER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
EXAMPLES_DIR="${SITG_WEBHOOK_EXAMPLES:-/var/cache/sitg-bot/npm/node_modules/@octokit/webhooks-examples}"
CLK_TCK="$(getconf CLK_TCK)"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
	done
}

# A fresh work directory for this run, removed on exit with every process started here.
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sitg-bench.XXXXXX")"
STARTED_PIDS=()
cleanup() {
	local pid
	for pid in "${STARTED_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -z "${KEEP_RUN_DIR:-}" ]]; then
		rm -rf "$RUN_DIR"
	else
		log "run directory kept: $RUN_DIR"
	fi
}
trap cleanup EXIT

# Builds the release binaries (once per script) and sets BIN (`sitg-bot`, the worker and
# operator measured) and SANDBOX_BIN (`sitg-sandbox`, the simulators).
build_release() {
	log "cargo build --release -p sitg-bot -p sitg-sandbox"
	(cd "$REPO_DIR" && cargo build --release -p sitg-bot -p sitg-sandbox >&2)
	# Wherever cargo put them: CARGO_TARGET_DIR or target/.
	local target
	target="$(cd "$REPO_DIR" && cargo metadata --format-version 1 --no-deps |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
	SANDBOX_BIN="$target/release/sitg-sandbox"
	[[ -x "$SANDBOX_BIN" ]] || die "no binary at $SANDBOX_BIN"
	# SITG_BENCH_BIN: measure a given sitg-bot binary (another commit's build, for an A/B
	# run) against the simulators of this tree.
	if [[ -n "${SITG_BENCH_BIN:-}" ]]; then
		BIN="$SITG_BENCH_BIN"
		[[ -x "$BIN" ]] || die "SITG_BENCH_BIN=${BIN} is not an executable"
		log "measuring ${BIN} (SITG_BENCH_BIN)"
		return
	fi
	BIN="$target/release/sitg-bot"
	[[ -x "$BIN" ]] || die "no binary at $BIN"
}

# Load average and CPU count, as JSON: what the figures were measured under.
machine_json() {
	python3 - <<'PY'
import json, os
print(json.dumps({"loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                  "cpus": os.cpu_count(),
                  "kernel": os.uname().release}))
PY
}

# Writes GitHub's first pull_request.opened example with an installation to $1,
# compact, padded with trailing spaces (valid JSON) to ${2:-25000} bytes.
write_opened_body() {
	local out="$1" size="${2:-25000}"
	[[ -f "$EXAMPLES_DIR/api.github.com/index.json" ]] ||
		die "GitHub's example payloads are not at $EXAMPLES_DIR (npm install --prefix /var/cache/sitg-bot/npm @octokit/webhooks-examples)"
	python3 - "$EXAMPLES_DIR/api.github.com/index.json" "$out" "$size" <<'PY'
import json, sys
index, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
for entry in json.load(open(index)):
    if entry["name"] != "pull_request":
        continue
    for ex in entry["examples"]:
        if ex.get("action") == "opened" and "installation" in ex:
            body = json.dumps(ex, separators=(",", ":")).encode()
            body += b" " * max(0, size - len(body))
            open(out, "wb").write(body)
            sys.exit(0)
sys.exit("no pull_request.opened example with an installation")
PY
}

# `sha256=` + hex HMAC-SHA256 of file $2 with secret $1 (GitHub's X-Hub-Signature-256).
sign_file() {
	printf 'sha256=%s' "$(openssl dgst -sha256 -hmac "$1" -r "$2" | cut -d' ' -f1)"
}

# Starts `sitg-sandbox serve` on LOAD_CPU with the given options; sets SANDBOX_ENV (the
# env file), SANDBOX_PID and CONTROL_URL.
start_sandbox() {
	SANDBOX_ENV="$RUN_DIR/sandbox-$RANDOM.env"
	taskset -c "$LOAD_CPU" "$SANDBOX_BIN" serve --env-file "$SANDBOX_ENV" "$@" \
		>"$RUN_DIR/sandbox.out" 2>"$RUN_DIR/sandbox.err" &
	SANDBOX_PID=$!
	STARTED_PIDS+=("$SANDBOX_PID")
	local i
	for i in $(seq 1 200); do
		[[ -f "$SANDBOX_ENV" ]] && break
		kill -0 "$SANDBOX_PID" 2>/dev/null || die "the sandbox exited: $(cat "$RUN_DIR/sandbox.err")"
		sleep 0.05
	done
	[[ -f "$SANDBOX_ENV" ]] || die "the sandbox wrote no env file"
	CONTROL_URL="$(sed -n 's/^SITG_SANDBOX_CONTROL_URL=//p' "$SANDBOX_ENV")"
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# Value of KEY in the sandbox env file.
sandbox_var() {
	sed -n "s/^$1=//p" "$SANDBOX_ENV"
}

# Starts `sitg-bot worker` on WORKER_CPU with the sandbox env plus KEY=VALUE overrides;
# sets WORKER_PID and WORKER_URL and waits until /readyz answers 200.
start_worker() {
	local -a env
	mapfile -t env <"$SANDBOX_ENV"
	env+=("$@")
	local port
	port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
	env+=("PORT=$port")
	env -i "${env[@]}" taskset -c "$WORKER_CPU" "$BIN" worker \
		>>"$RUN_DIR/worker.log" 2>>"$RUN_DIR/worker.err" &
	WORKER_PID=$!
	STARTED_PIDS+=("$WORKER_PID")
	WORKER_URL="http://127.0.0.1:$port"
	local i
	for i in $(seq 1 200); do
		if curl -fsS -o /dev/null "$WORKER_URL/readyz" 2>/dev/null; then
			return 0
		fi
		kill -0 "$WORKER_PID" 2>/dev/null || die "the worker exited: $(tail -5 "$RUN_DIR/worker.err")"
		sleep 0.05
	done
	die "the worker never became ready"
}

# utime+stime of process $1, in clock ticks.
cpu_ticks() {
	awk '{print $14 + $15}' "/proc/$1/stat"
}

# Field $2 (VmRSS, VmHWM) of /proc/$1/status, in KiB.
mem_kib() {
	awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}

# Median, min and max of a list of JSON objects (one per line on stdin) for the
# dotted keys given as arguments; prints one JSON object.
summarise() {
	python3 -c '
import json, statistics, sys
keys = sys.argv[1:]
rows = [json.loads(l) for l in sys.stdin if l.strip()]
def get(row, key):
    for part in key.split("."):
        row = row[part]
    return row
out = {"runs": len(rows)}
for key in keys:
    values = [get(r, key) for r in rows]
    out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
print(json.dumps(out))
' "$@"
}
