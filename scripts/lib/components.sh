# shellcheck shell=bash
# Processes a script runs in the background, each with a pid file under DIR/run and a log
# under DIR/logs (sourced by scripts/control-plane.sh and scripts/node.sh, which both keep
# their state in a directory given on the command line).

# Absolute path of state directory $1 (created if missing).
state_dir() {
	[[ -n "${1:-}" ]] || die "missing DIR argument"
	mkdir -p "$1"
	(cd "$1" && pwd -P)
}

# Succeeds when component $2 of state directory $1 runs: its pid is alive and its command
# line names the directory (a recycled pid or a zombie does not count).
component_running() {
	local dir="$1" name="$2" pid
	[[ -s "$dir/run/$name.pid" ]] || return 1
	pid="$(<"$dir/run/$name.pid")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	# The process may end between the test above and the read: that reads as "not running".
	{ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$dir/"
}

# Starts component $2 of state directory $1 as the command "${@:3}", in a session of its
# own, logging to DIR/logs/$2.log; returns once it runs (or ended).
start_component() {
	local dir="$1" name="$2"
	shift 2
	setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
	local pid=$! i
	printf '%s\n' "$pid" >"$dir/run/$name.pid"
	# Until the forked shell has exec'd the component, its command line is this script's,
	# and component_running would take it for a component that already ended.
	for ((i = 0; i < 200; i++)); do
		component_running "$dir" "$name" && return 0
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
}
