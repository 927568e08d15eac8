#!/usr/bin/env bash
# node.sh — a real one-node Kubernetes cluster on this machine, offline, for the tests
# that run the fleet the way users do: the control plane of scripts/control-plane.sh,
# plus kube-scheduler, containerd (Debian's, with its own root, state and socket), runc,
# the CNI bridge plugin and a kubelet. Pods live on a bridge this script creates; they
# get no default route, no masquerade and no forwarding: they reach each other and the
# host's bridge address, nothing else.
#
# Usage:
#   scripts/node.sh build          build kubelet, kube-scheduler, crictl (cached) and check
#                                  the Debian packages
#   scripts/node.sh up DIR         start plane + node with their state in DIR; prints the
#                                  env (also in DIR/env)
#   scripts/node.sh down DIR       stop everything and undo every change to the machine
#   scripts/node.sh check-clean    fail (listing what) if a node left anything behind
#   scripts/node.sh import DIR ARCHIVE   load a docker-archive (scripts/image.sh archive)
#                                  into the node's containerd (namespace k8s.io)
#
# What `up` sets up (and `down` takes away):
#   - bridge sitg0 with 10.244.0.1/24; CNI bridge + host-local (isGateway false, no
#     ipMasq, no routes); pod IPs 10.244.0.128-254; pods' resolv.conf names 127.0.0.1
#   - the API server on 10.244.0.1:443 with Service range 10.244.0.0/25, so the
#     `kubernetes` Service's ClusterIP is the very address the API server listens on and
#     in-cluster clients work without kube-proxy; EndpointSlice controller on
#   - containerd with restrict_oom_score_adj (the machine lacks CAP_SYS_RESOURCE), and a
#     pause image made locally from Debian's static catatonit
#   - kubelet (cgroupfs driver, cgroup v1 allowed, swap allowed, relaxed eviction, x509 +
#     webhook authentication/authorization of its API; the API server holds a client
#     certificate for it so `kubectl logs/exec` work) registering node `sitg-node`
#   - the sysctls the kubelet changes (kernel.panic, kernel.panic_on_oops,
#     vm.overcommit_memory) are recorded first and restored by `down`
# The kubelet uses fixed host paths (/var/lib/kubelet, /var/log/containers, /run/netns,
# the kubepods cgroups): one node per machine at a time.
#
# After `up DIR`: DIR/env holds the plane's variables (KUBECONFIG, SITG_KUBE_BIN_DIR, HELM,
# ...) plus SITG_NODE_NAME, SITG_NODE_DIR, CONTAINER_RUNTIME_ENDPOINT (for crictl) and
# SITG_CRICTL; DIR/logs holds every component's log.
#
# Durations measured on 2 cores shared with other builds: `up` 8-15 s (plane 5-12 s,
# node Ready 3 s later; 28 s under a load average of 20), `down` 5-6 s; `build` of
# kubelet + kube-scheduler 2 min with the plane's Go caches warm, crictl ~1 min.
#
# Environment: SITG_NODE_TIMEOUT (seconds `up` waits for the node, default 120),
# SITG_NODE_OWNER_PID (a watchdog runs `down DIR` once that process exits), and
# control-plane.sh's variables (K8S_VERSION, SITG_TOOLS_DIR, ...).
#
# Needs root, and Debian's containerd, runc, containernetworking-plugins, catatonit,
# iproute2, podman (the pause image); go for the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRIPT="$ROOT/scripts/node.sh"
CP="$ROOT/scripts/control-plane.sh"
BRIDGE=sitg0
BRIDGE_ADDR=10.244.0.1
POD_SUBNET=10.244.0.0/24
SERVICE_CIDR=10.244.0.0/25
NODE_NAME=sitg-node
PAUSE_IMAGE=localhost/sitg-bot/pause:catatonit
CNI_BIN=/usr/lib/cni
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory)
NODE_TIMEOUT="${SITG_NODE_TIMEOUT:-120}"
COMPONENTS=(kubelet kube-scheduler containerd)
MARKER=.sitg-node
STOP_GRACE=10

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib/components.sh
. "$ROOT/scripts/lib/components.sh"

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

bin_dir() { "$CP" bin-dir; }

cmd_build() {
	local pkg missing=()
	for pkg in containerd runc ctr containerd-shim-runc-v2 catatonit ip podman; do
		command -v "$pkg" >/dev/null || missing+=("$pkg")
	done
	[[ -x "$CNI_BIN/bridge" && -x "$CNI_BIN/host-local" && -x "$CNI_BIN/loopback" ]] || missing+=("$CNI_BIN/bridge")
	((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install -y containerd runc containernetworking-plugins catatonit iproute2 podman"
	"$CP" node-build
}

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

stop_component() {
	local dir="$1" name="$2" pid i
	component_running "$dir" "$name" || { rm -f "$dir/run/$name.pid"; return 0; }
	pid="$(<"$dir/run/$name.pid")"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < STOP_GRACE * 10; i++)); do
		component_running "$dir" "$name" || break
		sleep 0.1
	done
	if component_running "$dir" "$name"; then
		log "${name} still runs ${STOP_GRACE}s after TERM: sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$dir/run/$name.pid"
}

wait_until() {
	local dir="$1" name="$2" what="$3"
	shift 3
	until "$@" >/dev/null 2>&1; do
		if [[ -n "$name" ]] && ! component_running "$dir" "$name"; then
			log "${name} exited while waiting for ${what}; last lines of its log:"
			tail -n 30 "$dir/logs/$name.log" >&2 || true
			return 1
		fi
		if ((SECONDS >= UP_DEADLINE)); then
			log "timed out waiting for ${what}"
			if [[ -n "$name" ]]; then tail -n 30 "$dir/logs/$name.log" >&2 || true; fi
			return 1
		fi
		sleep 0.5
	done
}

# Issues $1/$2.{key,crt} signed by the plane's CA in $3, subject $4, extensions "${@:5}".
issue_cert() {
	local out="$1" name="$2" pki="$3" subject="$4" cnf
	shift 4
	cnf="$out/$name.cnf"
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/$name.key" 2>/dev/null)
	{
		printf '[req]\ndistinguished_name = dn\n[dn]\n[ext]\n'
		printf 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n'
		printf '%s\n' "$@"
	} >"$cnf"
	openssl req -new -key "$out/$name.key" -subj "$subject" -config "$cnf" -out "$out/$name.csr"
	openssl x509 -req -in "$out/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
		-CAserial "$out/ca.srl" -CAcreateserial -days 30 -extfile "$cnf" -extensions ext \
		-out "$out/$name.crt" 2>/dev/null
	rm -f "$out/$name.csr" "$cnf"
}

# Writes kubeconfig $1 for server $2 with CA $3 and client pair $4.{crt,key}.
write_kubeconfig() {
	local file="$1" server="$2" ca="$3" pair="$4"
	(
		umask 077
		cat >"$file" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			- name: sitg-node
			  cluster:
			    server: ${server}
			    certificate-authority-data: $(base64 -w0 "$ca")
			users:
			- name: user
			  user:
			    client-certificate-data: $(base64 -w0 "$pair.crt")
			    client-key-data: $(base64 -w0 "$pair.key")
			contexts:
			- name: sitg-node
			  context: {cluster: sitg-node, user: user}
			current-context: sitg-node
		EOF
	)
}

kubectl_node() { "$(bin_dir)/kubectl" --kubeconfig "$1/plane/kubeconfig" --request-timeout=5s "${@:2}"; }

node_ready() {
	[[ "$(kubectl_node "$1" get node "$NODE_NAME" \
		-o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

ctr_node() { ctr --address "$1/containerd/containerd.sock" --namespace k8s.io "${@:2}"; }

# ---------------------------------------------------------------------------
# pause image
# ---------------------------------------------------------------------------

# Writes the pause image (Debian's static catatonit as PID 1 of every pod sandbox) as a
# docker-archive to $1, building it with podman when missing (no RUN step: offline).
pause_archive() {
	local out="$1" ctx
	if ! podman image exists "$PAUSE_IMAGE"; then
		ctx="$(mktemp -d)"
		cp "$(command -v catatonit)" "$ctx/catatonit"
		printf 'FROM scratch\nCOPY catatonit /catatonit\nUSER 65535:65535\nENTRYPOINT ["/catatonit", "-P"]\n' >"$ctx/Containerfile"
		podman --runtime runc build --pull=never -q -t "$PAUSE_IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null
		rm -rf "$ctx"
	fi
	podman save --format docker-archive -o "$out" "$PAUSE_IMAGE" 2>/dev/null
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

write_containerd_config() {
	local dir="$1"
	mkdir -p "$dir/containerd/root" "$dir/containerd/state" "$dir/cni/net.d" "$dir/cni/ipam"
	cat >"$dir/containerd/config.toml" <<-EOF
		version = 2
		root = "$dir/containerd/root"
		state = "$dir/containerd/state"
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
		[grpc]
		  address = "$dir/containerd/containerd.sock"
		[ttrpc]
		  address = "$dir/containerd/containerd.sock.ttrpc"
		[debug]
		  level = "warn"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "$PAUSE_IMAGE"
		  restrict_oom_score_adj = true
		  disable_apparmor = true
		  enable_selinux = false
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "$CNI_BIN"
		    conf_dir = "$dir/cni/net.d"
	EOF
	cat >"$dir/cni/net.d/10-sitg.conflist" <<-EOF
		{
		  "cniVersion": "0.4.0",
		  "name": "sitg",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "$BRIDGE",
		      "isGateway": false,
		      "isDefaultGateway": false,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "dataDir": "$dir/cni/ipam",
		        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "10.244.0.128", "rangeEnd": "10.244.0.254"}]]
		      }
		    }
		  ]
		}
	EOF
}

write_kubelet_config() {
	local dir="$1" pki="$1/plane/pki"
	printf 'nameserver 127.0.0.1\n' >"$dir/kubelet/resolv.conf"
	cat >"$dir/kubelet/config.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: $BRIDGE_ADDR
		port: 10250
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		healthzPort: 10248
		tlsCertFile: $dir/kubelet/pki/kubelet-serving.crt
		tlsPrivateKeyFile: $dir/kubelet/pki/kubelet-serving.key
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: true}
		  x509: {clientCAFile: $pki/ca.crt}
		authorization:
		  mode: Webhook
		containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
		cgroupDriver: cgroupfs
		failCgroupV1: false
		failSwapOn: false
		resolvConf: $dir/kubelet/resolv.conf
		clusterDomain: cluster.local
		podLogsDir: $dir/kubelet/pod-logs
		volumePluginDir: $dir/kubelet/volume-plugins
		makeIPTablesUtilChains: false
		rotateCertificates: false
		serverTLSBootstrap: false
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		evictionHard:
		  memory.available: "1Mi"
		  nodefs.available: "1%"
		  nodefs.inodesFree: "1%"
		  imagefs.available: "1%"
		maxPods: 60
		registerNode: true
		syncFrequency: 10s
		fileCheckFrequency: 10s
	EOF
}

on_up_exit() {
	if ((UP_DONE == 0)) && [[ -n "$UP_DIR" ]]; then
		log "up failed: taking down what was started (logs stay in ${UP_DIR}/logs)"
		cmd_down "$UP_DIR" || true
	fi
}

UP_DIR=""
UP_DONE=0
cmd_up() {
	local dir start=$SECONDS name
	dir="$(state_dir "${1:-}")"
	((EUID == 0)) || die "a node needs root"
	for name in "${COMPONENTS[@]}"; do
		component_running "$dir" "$name" && die "${dir} already runs a node (${name}); run: $0 down ${dir}"
	done
	if ip link show "$BRIDGE" >/dev/null 2>&1 || pgrep -x kubelet >/dev/null; then
		die "another node runs on this machine (bridge ${BRIDGE} or a kubelet exists); one at a time"
	fi
	if [[ -e "$dir/$MARKER" ]]; then
		rm -rf "$dir/plane" "$dir/containerd" "$dir/cni" "$dir/kubelet" "$dir/run" "$dir/logs" "$dir/env"
	elif [[ -n "$(ls -A "$dir")" ]]; then
		die "${dir} is not empty and holds no node of this script; use an empty directory"
	fi
	cmd_build
	local owner="${SITG_NODE_OWNER_PID:-}"
	if [[ -n "$owner" ]] && ! kill -0 "$owner" 2>/dev/null; then
		die "SITG_NODE_OWNER_PID=${owner} is not a running process"
	fi
	printf 'node state of %s; safe to delete after its "down"\n' "$SCRIPT" >"$dir/$MARKER"
	mkdir -p "$dir/run" "$dir/logs" "$dir/kubelet/pki"
	UP_DIR="$dir"
	UP_DEADLINE=$((SECONDS + NODE_TIMEOUT))
	trap on_up_exit EXIT

	# What down restores, recorded before anything changes.
	local s
	for s in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$s" "$(sysctl -n "$s")"; done >"$dir/run/sysctls"
	for s in /var/lib/kubelet /var/log/containers /var/log/pods /run/netns /etc/kubernetes; do
		if [[ -e "$s" ]]; then printf '%s\n' "$s"; fi
	done >"$dir/run/preexisting"

	ip link add "$BRIDGE" type bridge
	ip addr add "${BRIDGE_ADDR}/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up

	SITG_CP_ADDRESS="$BRIDGE_ADDR" SITG_CP_API_PORT=443 SITG_CP_SERVICE_CIDR="$SERVICE_CIDR" \
		SITG_CP_KUBELET_CLIENT=1 SITG_CP_OWNER_PID='' "$CP" up "$dir/plane" >/dev/null

	write_containerd_config "$dir"
	start_component "$dir" containerd containerd --config "$dir/containerd/config.toml"
	wait_until "$dir" containerd "containerd's socket" ctr_node "$dir" version
	pause_archive "$dir/run/pause.tar"
	ctr_node "$dir" images import "$dir/run/pause.tar" >/dev/null

	local pki="$dir/plane/pki" kp="$dir/kubelet/pki" server="https://${BRIDGE_ADDR}:443"
	issue_cert "$kp" kubelet "$pki" "/O=system:nodes/CN=system:node:${NODE_NAME}" 'extendedKeyUsage = clientAuth'
	issue_cert "$kp" kubelet-serving "$pki" "/CN=${NODE_NAME}" 'extendedKeyUsage = serverAuth' \
		"subjectAltName = IP:${BRIDGE_ADDR}, DNS:${NODE_NAME}"
	issue_cert "$kp" scheduler "$pki" "/CN=system:kube-scheduler" 'extendedKeyUsage = clientAuth'
	write_kubeconfig "$dir/kubelet/kubeconfig" "$server" "$pki/ca.crt" "$kp/kubelet"
	write_kubeconfig "$dir/run/scheduler.kubeconfig" "$server" "$pki/ca.crt" "$kp/scheduler"

	start_component "$dir" kube-scheduler "$(bin_dir)/kube-scheduler" \
		--kubeconfig="$dir/run/scheduler.kubeconfig" \
		--authentication-kubeconfig="$dir/run/scheduler.kubeconfig" \
		--authorization-kubeconfig="$dir/run/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --profiling=false

	write_kubelet_config "$dir"
	start_component "$dir" kubelet "$(bin_dir)/kubelet" \
		--config="$dir/kubelet/config.yaml" \
		--kubeconfig="$dir/kubelet/kubeconfig" \
		--root-dir="$dir/kubelet/root" \
		--hostname-override="$NODE_NAME" \
		--node-ip="$BRIDGE_ADDR" \
		--v=1
	wait_until "$dir" kubelet "node ${NODE_NAME} Ready" node_ready "$dir"
	# The kubelet registers its node with the not-ready taint, which the node lifecycle
	# controller lifts once the node is Ready; that controller does not run here (it
	# would also evict pods off a node whose kubelet pauses), so lift it once.
	kubectl_node "$dir" taint node "$NODE_NAME" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true

	{
		cat "$dir/plane/env"
		printf 'SITG_NODE_NAME=%s\n' "$NODE_NAME"
		printf 'SITG_NODE_DIR=%s\n' "$dir"
		printf 'CONTAINER_RUNTIME_ENDPOINT=unix://%s\n' "$dir/containerd/containerd.sock"
		printf 'SITG_CRICTL=%s\n' "$(bin_dir)/crictl"
	} >"$dir/env"
	if [[ -n "$owner" ]]; then
		# shellcheck disable=SC2016 # expanded by the inner shell
		setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down "$3"' \
			watchdog "$owner" "$SCRIPT" "$dir/" >"$dir/logs/watchdog.log" 2>&1 </dev/null &
		printf '%s\n' "$!" >"$dir/run/watchdog.pid"
	fi
	UP_DONE=1
	log "up: node ${NODE_NAME} Ready in $((SECONDS - start))s; env in ${dir}/env"
	cat "$dir/env"
}

# ---------------------------------------------------------------------------
# down / check-clean
# ---------------------------------------------------------------------------

# Mount points at or under any of "$@", deepest first.
mounts_under() {
	local prefix
	awk '{ print $5 }' /proc/self/mountinfo | while IFS= read -r m; do
		for prefix in "$@"; do
			if [[ "$m" == "$prefix" || "$m" == "$prefix"/* ]]; then printf '%s\n' "$m"; fi
		done
	done | sort -u -r
}

# Processes whose command line names directory $1 (shims, containers' runc, pods' processes
# live under its containerd state).
pids_under() {
	local p
	for p in /proc/[0-9]*; do
		[[ "${p#/proc/}" == "$$" ]] && continue
		if { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$1/"; then printf '%s\n' "${p#/proc/}"; fi
	done
}

# cgroup directories the kubelet made (every hierarchy), deepest first.
kubepods_cgroups() {
	find /sys/fs/cgroup -maxdepth 3 -type d -name 'kubepods*' 2>/dev/null | while IFS= read -r d; do
		find "$d" -depth -type d
	done
}

cmd_down() {
	local dir start=$SECONDS
	[[ -n "${1:-}" ]] || die "missing DIR argument"
	[[ -d "$1" ]] || die "no such directory: $1"
	dir="$(cd "$1" && pwd -P)"
	[[ -e "$dir/$MARKER" ]] || die "${dir} holds no node of this script"
	if component_running "$dir" watchdog && [[ "$(<"$dir/run/watchdog.pid")" != "$$" ]]; then
		kill -TERM "$(<"$dir/run/watchdog.pid")" 2>/dev/null || true
	fi
	rm -f "$dir/run/watchdog.pid"
	# The kubelet first, so it restarts nothing; then the pods, through containerd.
	stop_component "$dir" kubelet
	stop_component "$dir" kube-scheduler
	if component_running "$dir" containerd; then
		local ids
		ids="$(ctr_node "$dir" tasks list -q 2>/dev/null || true)"
		if [[ -n "$ids" ]]; then
			# shellcheck disable=SC2086 # one id per word
			ctr_node "$dir" tasks kill --all --signal SIGKILL $ids >/dev/null 2>&1 || true
		fi
		for id in $ids; do
			ctr_node "$dir" tasks delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
	stop_component "$dir" containerd
	# Shims and containers outlive containerd: end whatever still names this directory.
	local pids pid i
	for i in 1 2 3; do
		pids="$(pids_under "$dir")"
		[[ -z "$pids" ]] && break
		for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
		sleep 0.3
	done
	if [[ -e "$dir/plane/.sitg-control-plane" ]]; then "$CP" down "$dir/plane" >/dev/null 2>&1 || true; fi

	# Mounts: pods' volumes under the kubelet root, the containerd snapshots and sandbox
	# shm, network namespaces.
	local m
	for m in $(mounts_under "$dir" /var/lib/kubelet /run/netns /var/run/netns /run/containerd); do
		umount -l "$m" 2>/dev/null || true
	done
	local ns
	for ns in /run/netns/cni-*; do
		[[ -e "$ns" ]] || continue
		ip netns delete "$(basename "$ns")" 2>/dev/null || rm -f "$ns"
	done
	local d
	for d in $(kubepods_cgroups); do rmdir "$d" 2>/dev/null || true; done
	ip link delete "$BRIDGE" 2>/dev/null || true
	# Pods' veth ends go with their namespaces; any left on the bridge's side goes here.
	for d in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
		if ip -d link show "$d" 2>/dev/null | grep -q "master ${BRIDGE}"; then ip link delete "$d" 2>/dev/null || true; fi
	done
	if [[ -s "$dir/run/sysctls" ]]; then
		local line
		while IFS= read -r line; do sysctl -q -w "$line" >/dev/null || log "could not restore ${line}"; done <"$dir/run/sysctls"
	fi
	for d in /var/lib/kubelet /var/log/containers /var/log/pods /run/netns /etc/kubernetes; do
		if [[ -e "$d" ]] && ! grep -qxF "$d" "$dir/run/preexisting" 2>/dev/null; then
			[[ -n "$(mounts_under "$d")" ]] || rm -rf "$d"
		fi
	done
	# Mounts in DIR that a lazy unmount left are gone now; the state itself can go too,
	# except the logs.
	rm -rf "$dir/containerd" "$dir/kubelet/root" "$dir/cni/ipam" 2>/dev/null || true
	log "down: ${dir} stopped in $((SECONDS - start))s (logs in ${dir}/logs)"
}

# PIDs of live processes named NAME. An exited process stays a zombie (state Z, no
# memory, no files, no mounts) until PID 1 reaps it, which on some machines takes
# seconds; it holds nothing, so it is not "left behind".
live_pids() {
	local pid state out=()
	for pid in $(pgrep -x "$1" 2>/dev/null); do
		state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)"
		[[ -n "$state" && "$state" != Z ]] && out+=("$pid")
	done
	printf '%s' "${out[*]}"
}

cmd_check_clean() {
	local problems=() m p
	if ip link show "$BRIDGE" >/dev/null 2>&1; then problems+=("bridge ${BRIDGE}"); fi
	local live
	for p in kubelet kube-scheduler containerd containerd-shim; do
		live="$(live_pids "$p")"
		if [[ -n "$live" ]]; then problems+=("process ${p}: ${live}"); fi
	done
	while IFS= read -r m; do problems+=("mount ${m}"); done < <(mounts_under /var/lib/kubelet /run/netns /var/run/netns)
	while IFS= read -r m; do
		case "$m" in */containerd/* | */kubelet/root/*) problems+=("mount ${m}") ;; esac
	done < <(awk '$5 ~ /sitg-node|containerd|kubelet/ { print $5 }' /proc/self/mountinfo)
	for p in /run/netns/cni-*; do
		if [[ -e "$p" ]]; then problems+=("netns ${p}"); fi
	done
	while IFS= read -r m; do problems+=("cgroup ${m}"); done < <(kubepods_cgroups)
	if [[ -d /var/lib/kubelet ]]; then problems+=("directory /var/lib/kubelet"); fi
	if ((${#problems[@]} > 0)); then
		printf 'left behind: %s\n' "${problems[@]}" >&2
		return 1
	fi
	log "clean: no bridge, node process, mount, netns or kubepods cgroup left"
}

cmd_import() {
	local dir="${1:-}" archive="${2:-}"
	[[ -n "$dir" && -s "$archive" ]] || usage
	dir="$(cd "$dir" && pwd -P)"
	component_running "$dir" containerd || die "no node runs in ${dir}"
	ctr_node "$dir" images import "$archive"
}

main() {
	local sub="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$sub" in
	build) cmd_build ;;
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	check-clean) cmd_check_clean ;;
	import) cmd_import "$@" ;;
	*) usage ;;
	esac
}

main "$@"
