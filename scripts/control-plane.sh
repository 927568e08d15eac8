#!/usr/bin/env bash
# control-plane.sh — a real Kubernetes control plane on loopback for the operator,
# chart and CRD tests: etcd, kube-apiserver and kube-controller-manager built from
# their upstream Go modules (the same idea as kubebuilder's envtest, plus the
# controller-manager so garbage collection and the Deployment/ReplicaSet/HPA
# controllers are real), kubectl and helm alongside.
#
# Usage:
#   scripts/control-plane.sh build        build missing binaries into the versioned cache
#                                         (seconds when cached; many minutes cold)
#   scripts/control-plane.sh node-build   also build kubelet, kube-scheduler and crictl
#                                         (CRICTL_VERSION, default 1.34.0) for scripts/node.sh
#   scripts/control-plane.sh bin-dir      print the directory holding etcd, kube-apiserver,
#                                         kube-controller-manager and kubectl
#   scripts/control-plane.sh helm-path    print the path of the helm binary
#   scripts/control-plane.sh up DIR       start a fresh plane whose state lives in DIR
#                                         (certificates, etcd data, kubeconfig, env, logs, pids)
#   scripts/control-plane.sh down DIR     stop the plane of DIR (TERM, then KILL); logs stay
#   scripts/control-plane.sh status DIR   print each component's pid state and /readyz
#
# After `up DIR`:
#   DIR/kubeconfig   admin credentials (client certificate in group system:masters)
#   DIR/env          KEY=VALUE lines: KUBECONFIG, SITG_KUBE_BIN_DIR, HELM, SITG_KUBE_API_SERVER
#                    and HELM_CACHE_HOME/HELM_CONFIG_HOME/HELM_DATA_HOME (inside DIR);
#                    load with `set -a; . DIR/env; set +a` (`up` also prints them on stdout)
#   DIR/logs/*.log   one log per component; DIR/run/*.pid one pid file per component
# Ports are chosen at run time among free loopback ports, so several planes can run at once.
# There is no scheduler or kubelet: Pods are created by their controllers and stay Pending.
#
# Durations measured on 2 cores shared with Rust builds: cold `build` 15-18 min (about 14
# CPU-minutes; 1.1 GB of modules, 3.7 GB of Go build cache), cached `build` well under a
# second, `up` 5-7 s, `down` 1-2 s.
#
# Environment:
#   K8S_VERSION        Kubernetes release to build (default 1.34.4; k8s-openapi feature v1_34)
#   ETCD_VERSION       etcd release (default: the go.etcd.io/etcd/server/v3 version that
#                      k8s.io/kubernetes requires in its go.mod)
#   HELM_VERSION       helm v3 release (default 3.22.0)
#   SITG_TOOLS_DIR     binary cache root (default /var/cache/sitg-bot/tools); binaries land in
#                      $SITG_TOOLS_DIR/k8s-v$K8S_VERSION/bin and $SITG_TOOLS_DIR/helm-v$HELM_VERSION/bin
#   SITG_CP_TIMEOUT    seconds `up` waits for readiness (default 120)
#   SITG_CP_SERVICE_CIDR  Service ClusterIP range (default 10.0.0.0/24: 254 Services;
#                      the operator scale benchmark needs more)
#   SITG_CP_ADDRESS    address the API server binds and advertises (default 127.0.0.1;
#                      scripts/node.sh uses its bridge address so pods reach it)
#   SITG_CP_API_PORT   the API server's port (default: a free one; node.sh uses 443, the
#                      port of the `kubernetes` Service, so in-cluster clients need no proxy)
#   SITG_CP_KUBELET_CLIENT=1  give the API server a client certificate for kubelets
#                      (`kubectl logs/exec` on a node) and reach them by InternalIP
#   SITG_CP_HPA_SYNC_PERIOD  how often the HorizontalPodAutoscaler controller reconciles
#                      (kube-controller-manager --horizontal-pod-autoscaler-sync-period, a Go
#                      duration such as 5s; default: unset, Kubernetes' 15s); the node
#                      autoscaling test and benchmark set 5s
#   SITG_CP_OWNER_PID  if set at `up`, a watchdog runs `down DIR` once that process exits
#                      (e.g. the test runner's pid), so a crashed run leaves no plane behind
#   GOPATH/GOMODCACHE/GOCACHE are honoured as Go itself does.
#
# Needs: go (>= the go line of the modules built), openssl, coreutils, util-linux (flock, setsid).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
CRICTL_VERSION="${CRICTL_VERSION:-1.34.0}"
TOOLS_DIR="${SITG_TOOLS_DIR:-/var/cache/sitg-bot/tools}"
K8S_DIR="${TOOLS_DIR}/k8s-v${K8S_VERSION}"
K8S_BIN_DIR="${K8S_DIR}/bin"
HELM_DIR="${TOOLS_DIR}/helm-v${HELM_VERSION}"
HELM_BIN="${HELM_DIR}/bin/helm"
CP_TIMEOUT="${SITG_CP_TIMEOUT:-120}"
SERVICE_CIDR="${SITG_CP_SERVICE_CIDR:-10.0.0.0/24}"
CP_ADDRESS="${SITG_CP_ADDRESS:-127.0.0.1}"
CP_API_PORT="${SITG_CP_API_PORT:-}"
CP_KUBELET_CLIENT="${SITG_CP_KUBELET_CLIENT:-0}"
CP_HPA_SYNC_PERIOD="${SITG_CP_HPA_SYNC_PERIOD:-}"
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
STOP_GRACE=5
# Picked below the kernel's default ephemeral range (32768-60999) so outgoing
# connections of other processes never sit on a port chosen here.
PORT_MIN=20000
PORT_MAX=32000
PORT_LOCK="${TMPDIR:-/tmp}/sitg-control-plane-ports.lock"
MARKER=.sitg-control-plane
SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib/components.sh
. "$(dirname "$SCRIPT")/lib/components.sh"

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

# Runs "$@" and reports its wall time on stderr under the label $1.
timed() {
	local label="$1" start=$SECONDS
	shift
	log "${label}: started"
	"$@"
	log "${label}: done in $((SECONDS - start))s"
}

# Prints the path of the go.mod file of module $1 at version $2, downloading it if needed.
module_gomod() {
	go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

# Prints the version at which go.mod $1 requires module $2.
required_version() {
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }
		$1 == "require" && $2 == m { print $3; exit }' "$1"
}

# Writes a tools module for k8s.io/kubernetes into $1: the kubernetes go.mod replaces
# each k8s.io staging module with a path inside its own repository, which does not
# resolve from the module proxy, so each is pointed at its published v0.Y.Z twin.
write_k8s_tools_module() {
	local dir="$1" gomod staging go_line
	gomod="$(module_gomod k8s.io/kubernetes "v${K8S_VERSION}")"
	[[ -s "$gomod" ]] || die "could not download k8s.io/kubernetes v${K8S_VERSION} from the Go module proxy"
	go_line="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
	staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")"
	[[ -n "$staging" ]] || die "no staging replace lines found in $gomod"
	mkdir -p "$dir"
	{
		printf 'module sitg-bot/k8s-tools\n\ngo %s\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' \
			"$go_line" "$K8S_VERSION"
		local m
		for m in $staging; do
			printf '\t%s => %s v0.%s\n' "$m" "$m" "${K8S_VERSION#*.}"
		done
		printf ')\n'
	} >"$dir/go.mod"
}

# Writes a tools module for the etcd server into $1 (its own go.mod replaces its
# sibling modules with relative paths, so `go install ...@version` refuses it).
write_etcd_tools_module() {
	local dir="$1" version="$2"
	mkdir -p "$dir"
	printf 'module sitg-bot/etcd-tools\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
		"$version" >"$dir/go.mod"
}

# The -ldflags value that stamps the Kubernetes version into the binaries, as the
# upstream release build does (otherwise /version reports v0.0.0 and tools that
# check the server version, such as helm's kubeVersion, misjudge it).
k8s_ldflags() {
	local flags="-s -w" key val pkg pair
	local minor="${K8S_VERSION#*.}"
	minor="${minor%%.*}"
	for pair in "gitVersion=v${K8S_VERSION}" "gitMajor=1" "gitMinor=${minor}" "gitTreeState=clean" \
		"buildDate=1970-01-01T00:00:00Z"; do
		key="${pair%%=*}"
		val="${pair#*=}"
		for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
			flags+=" -X ${pkg}.${key}=${val}"
		done
	done
	printf '%s' "$flags"
}

# Inside tools module $1, resolves main packages "${@:5}" of the module at version
# $2 and builds them with -ldflags $4 into directory $3.
go_build_into() {
	local moddir="$1" version="$2" out="$3" ldflags="$4" pkg
	shift 4
	local at=()
	for pkg in "$@"; do at+=("${pkg}@${version}"); done
	(cd "$moddir" && go get "${at[@]}" && go build -trimpath -ldflags="$ldflags" -o "$out/" "$@")
}

build_k8s() {
	local want=() pkgs=() name tmp
	for name in kube-apiserver kube-controller-manager kubectl; do
		[[ -x "${K8S_BIN_DIR}/${name}" ]] || want+=("$name")
	done
	if ((${#want[@]} == 0)); then
		log "kube-apiserver, kube-controller-manager, kubectl v${K8S_VERSION}: cached"
		return
	fi
	for name in "${want[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/${name}")
	done
	timed "tools module for k8s.io/kubernetes v${K8S_VERSION}" write_k8s_tools_module "${K8S_DIR}/src"
	tmp="$(mktemp -d "${K8S_BIN_DIR}/.build.XXXXXX")"
	# One go build for all of them: the packages they share compile once.
	timed "go build ${want[*]} v${K8S_VERSION}" \
		go_build_into "${K8S_DIR}/src" "v${K8S_VERSION}" "$tmp" "$(k8s_ldflags)" "${pkgs[@]}"
	for name in "${want[@]}"; do
		mv -f "$tmp/$name" "${K8S_BIN_DIR}/$name"
	done
	rmdir "$tmp"
}

build_etcd() {
	local version tmp
	if [[ -x "${K8S_BIN_DIR}/etcd" ]]; then
		log "etcd: cached"
		return
	fi
	version="${ETCD_VERSION:-}"
	if [[ -z "$version" ]]; then
		version="$(required_version "$(module_gomod k8s.io/kubernetes "v${K8S_VERSION}")" go.etcd.io/etcd/server/v3)"
		version="${version#v}"
		[[ -n "$version" ]] || die "k8s.io/kubernetes v${K8S_VERSION} names no go.etcd.io/etcd/server/v3 version; set ETCD_VERSION"
	fi
	timed "tools module for etcd v${version}" write_etcd_tools_module "${K8S_DIR}/etcd-src" "$version"
	tmp="$(mktemp -d "${K8S_BIN_DIR}/.build.XXXXXX")"
	timed "go build etcd v${version}" \
		go_build_into "${K8S_DIR}/etcd-src" "v${version}" "$tmp" "-s -w" go.etcd.io/etcd/server/v3
	# go names a binary after the last path element that is not a /vN suffix.
	mv -f "$tmp/server" "${K8S_BIN_DIR}/etcd"
	rmdir "$tmp"
}

build_helm() {
	local tmp gomod client_go major minor ldflags
	if [[ -x "$HELM_BIN" ]]; then
		log "helm v${HELM_VERSION}: cached"
		return
	fi
	mkdir -p "${HELM_DIR}/bin"
	# helm's release build stamps its version and the Kubernetes version it assumes
	# for `helm template`/`helm lint` (client-go v0.Y.Z means Kubernetes 1.Y).
	gomod="$(module_gomod helm.sh/helm/v3 "v${HELM_VERSION}")"
	client_go="$(required_version "$gomod" k8s.io/client-go)"
	client_go="${client_go#v}"
	major=$((${client_go%%.*} + 1))
	minor="${client_go#*.}"
	minor="${minor%%.*}"
	ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v${HELM_VERSION}"
	ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${major}"
	ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor}"
	ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${major}"
	ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}"
	tmp="$(mktemp -d "${HELM_DIR}/bin/.build.XXXXXX")"
	# helm's go.mod has no replace lines, so a plain module-mode install works.
	timed "go install helm v${HELM_VERSION}" \
		env GOBIN="$tmp" go install -trimpath -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}"
	mv -f "$tmp/helm" "$HELM_BIN"
	rmdir "$tmp"
}

# The node's binaries (scripts/node.sh): kubelet and kube-scheduler from the same tools
# module as the plane, crictl from cri-tools. Not part of `build`: only a node needs them.
build_node() {
	local want=() pkgs=() name tmp
	for name in kubelet kube-scheduler; do
		[[ -x "${K8S_BIN_DIR}/${name}" ]] || want+=("$name")
	done
	if ((${#want[@]} > 0)); then
		for name in "${want[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${name}"); done
		[[ -s "${K8S_DIR}/src/go.mod" ]] ||
			timed "tools module for k8s.io/kubernetes v${K8S_VERSION}" write_k8s_tools_module "${K8S_DIR}/src"
		tmp="$(mktemp -d "${K8S_BIN_DIR}/.build.XXXXXX")"
		timed "go build ${want[*]} v${K8S_VERSION}" \
			go_build_into "${K8S_DIR}/src" "v${K8S_VERSION}" "$tmp" "$(k8s_ldflags)" "${pkgs[@]}"
		for name in "${want[@]}"; do mv -f "$tmp/$name" "${K8S_BIN_DIR}/$name"; done
		rmdir "$tmp"
	else
		log "kubelet, kube-scheduler v${K8S_VERSION}: cached"
	fi
	if [[ -x "${K8S_BIN_DIR}/crictl" ]]; then
		log "crictl v${CRICTL_VERSION}: cached"
		return
	fi
	tmp="$(mktemp -d "${K8S_BIN_DIR}/.build.XXXXXX")"
	timed "go install crictl v${CRICTL_VERSION}" \
		env GOBIN="$tmp" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@v${CRICTL_VERSION}"
	mv -f "$tmp/crictl" "${K8S_BIN_DIR}/crictl"
	rmdir "$tmp"
}

cmd_node_build() {
	cmd_build
	command -v go >/dev/null || die "go is not on PATH"
	export CGO_ENABLED=0
	exec 9>"${TOOLS_DIR}/.build.lock"
	flock 9
	build_node
	flock -u 9
}

# Succeeds when every binary is in the cache.
all_cached() {
	local name
	for name in etcd kube-apiserver kube-controller-manager kubectl; do
		[[ -x "${K8S_BIN_DIR}/${name}" ]] || return 1
	done
	[[ -x "$HELM_BIN" ]]
}

cmd_build() {
	if all_cached; then
		log "build: all binaries cached (${K8S_BIN_DIR}, ${HELM_BIN})"
		return
	fi
	command -v go >/dev/null || die "go is not on PATH"
	# Static binaries as in upstream releases: Go's internal linker, no C toolchain
	# needed, the same result on every machine.
	export CGO_ENABLED=0
	mkdir -p "$K8S_BIN_DIR" "${HELM_DIR}/bin"
	local start=$SECONDS
	# Concurrent builds of the same cache wait for each other instead of racing.
	exec 9>"${TOOLS_DIR}/.build.lock"
	flock 9
	build_etcd
	build_k8s
	build_helm
	flock -u 9
	log "build: all binaries ready in $((SECONDS - start))s (${K8S_BIN_DIR}, ${HELM_BIN})"
}

# ---------------------------------------------------------------------------
# up / down / status
# ---------------------------------------------------------------------------

# Controllers the tests rely on: owner-reference cascades, Deployment -> ReplicaSet -> Pod,
# HPAs, namespace deletion, per-namespace `default` ServiceAccounts (the ServiceAccount
# admission plugin refuses pods without one), PDB status, the kube-root-ca.crt ConfigMap,
# and the aggregated admin/edit/view ClusterRoles that charts bind to.
KCM_CONTROLLERS="garbage-collector-controller,deployment-controller,replicaset-controller"
KCM_CONTROLLERS+=",horizontal-pod-autoscaler-controller,namespace-controller"
KCM_CONTROLLERS+=",serviceaccount-controller,serviceaccount-token-controller"
KCM_CONTROLLERS+=",disruption-controller,root-ca-certificate-publisher-controller"
KCM_CONTROLLERS+=",clusterrole-aggregation-controller"
# EndpointSlices of Services, for the tests that route to ready pods on a real node.
KCM_CONTROLLERS+=",endpointslice-controller"

# Succeeds when some socket in this network namespace has local port $1 (state $2, if
# given: 0A = listening).
port_taken() {
	local hex files=() f
	hex="$(printf '%04X' "$1")"
	for f in /proc/net/tcp /proc/net/tcp6; do [[ -r "$f" ]] && files+=("$f"); done
	((${#files[@]} > 0)) || die "cannot read /proc/net/tcp to find free ports"
	awk -v h="$hex" -v st="${2:-}" 'FNR > 1 { n = split($2, a, ":");
		if (a[n] == h && (st == "" || $4 == st)) { found = 1; exit } }
		END { exit !found }' "${files[@]}"
}

# Prints a loopback port that no socket uses and that is not among "$@".
pick_port() {
	local port tries other taken
	for ((tries = 0; tries < 500; tries++)); do
		port=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % (PORT_MAX - PORT_MIN)))
		taken=0
		for other in "$@"; do
			if [[ "$other" == "$port" ]]; then taken=1; fi
		done
		if ((taken == 0)) && ! port_taken "$port"; then
			printf '%s\n' "$port"
			return
		fi
	done
	die "no free port found between ${PORT_MIN} and ${PORT_MAX}"
}

# Prints the last lines of component $2's log in plane $1.
show_log_tail() {
	local file="$1/logs/$2.log"
	log "last lines of ${file}:"
	if [[ -s "$file" ]]; then tail -n 25 "$file" >&2; else log "(empty)"; fi
}

# Writes an openssl config with one extension section `ext` holding "${@:2}" to $1.
write_ext() {
	local file="$1"
	shift
	{
		printf '[req]\ndistinguished_name = dn\n[dn]\n[ext]\n'
		printf '%s\n' "$@"
	} >"$file"
}

# Issues certificate $1/$3.crt for key $1/$3.key, subject $4 and extensions "${@:5}",
# signed by CA $1/$2.crt.
issue_leaf() {
	local pki="$1" ca="$2" name="$3" subject="$4" cnf="$1/openssl.cnf"
	shift 4
	write_ext "$cnf" 'basicConstraints = critical, CA:FALSE' \
		'keyUsage = critical, digitalSignature' "$@"
	openssl req -new -key "$pki/$name.key" -subj "$subject" -config "$cnf" -out "$pki/$name.csr"
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
		-CAserial "$pki/$ca.srl" -CAcreateserial -days 365 -extfile "$cnf" -extensions ext \
		-out "$pki/$name.crt" 2>/dev/null
	rm -f "$pki/$name.csr"
}

# Generates the plane's PKI in $1: a CA, the API server's serving certificate, the
# service-account signing key pair, client certificates for the admin (group
# system:masters) and the controller-manager (the identity its bootstrap RBAC role
# binds), and the front-proxy CA and client the API server uses for aggregated APIs
# (without them, every delegating component logs a missing requestheader CA).
generate_pki() {
	local pki="$1" cnf="$1/openssl.cnf" key ca
	mkdir -p "$pki"
	(
		umask 077
		for key in ca front-proxy-ca apiserver sa admin controller-manager front-proxy-client \
			apiserver-kubelet-client; do
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$key.key" 2>/dev/null
		done
	)
	openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
	write_ext "$cnf" 'basicConstraints = critical, CA:TRUE' \
		'keyUsage = critical, keyCertSign, cRLSign, digitalSignature' 'subjectKeyIdentifier = hash'
	for ca in ca front-proxy-ca; do
		openssl req -x509 -new -key "$pki/$ca.key" -subj "/CN=sitg-bot-test-$ca" -days 3650 \
			-config "$cnf" -extensions ext -out "$pki/$ca.crt"
	done
	issue_leaf "$pki" ca apiserver "/CN=kube-apiserver" 'extendedKeyUsage = serverAuth' \
		"subjectAltName = IP:127.0.0.1, IP:${CP_ADDRESS}, DNS:localhost, IP:10.0.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
	issue_leaf "$pki" ca admin "/O=system:masters/CN=sitg-bot-test-admin" 'extendedKeyUsage = clientAuth'
	issue_leaf "$pki" ca controller-manager "/CN=system:kube-controller-manager" 'extendedKeyUsage = clientAuth'
	issue_leaf "$pki" ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
		'extendedKeyUsage = clientAuth'
	issue_leaf "$pki" front-proxy-ca front-proxy-client "/CN=front-proxy-client" 'extendedKeyUsage = clientAuth'
	rm -f "$cnf"
}

# Writes a kubeconfig to $1 for API server URL $2, CA $3, client certificate $4 and key $5,
# with everything embedded so the file stands alone.
write_kubeconfig() {
	local file="$1" server="$2" ca="$3" crt="$4" key="$5"
	(
		umask 077
		cat >"$file" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			- name: sitg-bot-test
			  cluster:
			    server: ${server}
			    certificate-authority-data: $(base64 -w0 "$ca")
			users:
			- name: user
			  user:
			    client-certificate-data: $(base64 -w0 "$crt")
			    client-key-data: $(base64 -w0 "$key")
			contexts:
			- name: sitg-bot-test
			  context:
			    cluster: sitg-bot-test
			    user: user
			    namespace: default
			current-context: sitg-bot-test
		EOF
	)
}

# Starts a watcher that runs `down` on plane $1 once process $2 is gone, so a test
# run that dies without calling `down` leaves no plane behind.
start_watchdog() {
	local dir="$1" owner="$2"
	# shellcheck disable=SC2016 # expanded by the inner shell
	setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down "$3"' \
		watchdog "$owner" "$SCRIPT" "$dir/" >"$dir/logs/watchdog.log" 2>&1 </dev/null 8>&- 9>&- &
	printf '%s\n' "$!" >"$dir/run/watchdog.pid"
}

# Waits until "${@:3}" succeeds, polling every half second, while component $2 of plane
# $1 keeps running. Fails with the component's log tail on exit or timeout.
wait_for() {
	local dir="$1" name="$2" what="$3"
	shift 3
	until "$@" >/dev/null 2>&1; do
		if ! component_running "$dir" "$name"; then
			log "${name} exited while waiting for ${what}"
			show_log_tail "$dir" "$name"
			return 1
		fi
		if ((SECONDS >= UP_DEADLINE)); then
			log "timed out after ${CP_TIMEOUT}s waiting for ${what}"
			show_log_tail "$dir" "$name"
			return 1
		fi
		sleep 0.5
	done
}

# Stops the components of plane $1 one after another, clients before servers (the API
# server's shutdown still talks to etcd): TERM, then KILL after STOP_GRACE seconds.
stop_plane() {
	local dir="$1" name pid i
	for name in kube-controller-manager kube-apiserver etcd; do
		component_running "$dir" "$name" || continue
		pid="$(<"$dir/run/$name.pid")"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < STOP_GRACE * 10; i++)); do
			component_running "$dir" "$name" || break
			sleep 0.1
		done
		if component_running "$dir" "$name"; then
			log "${name} still runs ${STOP_GRACE}s after TERM: sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for name in "${COMPONENTS[@]}"; do rm -f "$dir/run/$name.pid"; done
	# The watchdog itself ends here when it is the one calling `down`.
	if component_running "$dir" watchdog && [[ "$(<"$dir/run/watchdog.pid")" != "$$" ]]; then
		kill -TERM "$(<"$dir/run/watchdog.pid")" 2>/dev/null || true
	fi
	rm -f "$dir/run/watchdog.pid"
}

kubectl_cmd() { "${K8S_BIN_DIR}/kubectl" --kubeconfig "$UP_DIR/kubeconfig" --request-timeout=5s "$@"; }
readyz_ok() { [[ "$(kubectl_cmd get --raw /readyz 2>/dev/null)" == "ok" ]]; }

UP_DIR=""
UP_DONE=0
on_up_exit() {
	if ((UP_DONE == 0)) && [[ -n "$UP_DIR" ]]; then
		log "up failed: stopping what was started (logs stay in ${UP_DIR}/logs)"
		stop_plane "$UP_DIR"
	fi
}

cmd_up() {
	local dir name start=$SECONDS
	dir="$(state_dir "${1:-}")"
	for name in "${COMPONENTS[@]}"; do
		if component_running "$dir" "$name"; then
			die "${dir} already has a running control plane (${name} pid $(<"$dir/run/$name.pid")); run: $0 down ${dir}"
		fi
	done
	cmd_build
	local owner="${SITG_CP_OWNER_PID:-}"
	if [[ -n "$owner" ]] && { ! [[ "$owner" =~ ^[0-9]+$ ]] || ! kill -0 "$owner" 2>/dev/null; }; then
		die "SITG_CP_OWNER_PID=${owner} is not a running process"
	fi
	command -v openssl >/dev/null || die "openssl is not on PATH"

	# A fresh plane every time: the state of an earlier, stopped plane is discarded, but
	# only in a directory this script made (the marker file), never in an arbitrary one.
	if [[ -e "$dir/$MARKER" ]]; then
		rm -rf "$dir/etcd" "$dir/pki" "$dir/run" "$dir/logs" "$dir/helm" "$dir/kubeconfig" \
			"$dir/controller-manager.kubeconfig" "$dir/env"
	elif [[ -n "$(ls -A "$dir")" ]]; then
		die "${dir} is not empty and holds no control plane of this script; use an empty directory"
	fi
	mkdir -p "$dir/run" "$dir/logs" "$dir/helm"
	printf 'control plane state of %s; safe to delete after its "down"\n' "$SCRIPT" >"$dir/$MARKER"
	UP_DIR="$dir"
	UP_DEADLINE=$((SECONDS + CP_TIMEOUT))
	trap on_up_exit EXIT

	generate_pki "$dir/pki"
	local pki="$dir/pki" etcd_port peer_port api_port kcm_port server
	# Each port stays locked from its pick until its component listens on it, so
	# planes started at the same moment never pick the same port.
	exec 8>>"$PORT_LOCK"
	flock 8
	etcd_port="$(pick_port)"
	peer_port="$(pick_port "$etcd_port")"
	printf '%s %s\n' "$etcd_port" "$peer_port" >"$dir/run/etcd.ports"
	start_component "$dir" etcd "${K8S_BIN_DIR}/etcd" \
		--name=sitg-bot-test \
		--data-dir="$dir/etcd" \
		--listen-client-urls="http://127.0.0.1:${etcd_port}" \
		--advertise-client-urls="http://127.0.0.1:${etcd_port}" \
		--listen-peer-urls="http://127.0.0.1:${peer_port}" \
		--initial-advertise-peer-urls="http://127.0.0.1:${peer_port}" \
		--initial-cluster="sitg-bot-test=http://127.0.0.1:${peer_port}" \
		--unsafe-no-fsync=true \
		--log-level=warn
	wait_for "$dir" etcd "etcd to listen on port ${etcd_port}" port_taken "$etcd_port" 0A
	flock -u 8

	flock 8
	api_port="${CP_API_PORT:-$(pick_port)}"
	printf '%s\n' "$api_port" >"$dir/run/kube-apiserver.ports"
	server="https://${CP_ADDRESS}:${api_port}"
	local kubelet_client=()
	if [[ "$CP_KUBELET_CLIENT" == 1 ]]; then
		kubelet_client=(--kubelet-client-certificate="$pki/apiserver-kubelet-client.crt"
			--kubelet-client-key="$pki/apiserver-kubelet-client.key"
			--kubelet-preferred-address-types=InternalIP)
	fi
	write_kubeconfig "$dir/kubeconfig" "$server" "$pki/ca.crt" "$pki/admin.crt" "$pki/admin.key"
	write_kubeconfig "$dir/controller-manager.kubeconfig" "$server" "$pki/ca.crt" \
		"$pki/controller-manager.crt" "$pki/controller-manager.key"
	# No endpoint reconciler: Endpoints refuse the loopback advertise address, and no
	# pod runs here that would reach the API server through the `kubernetes` Service.
	start_component "$dir" kube-apiserver "${K8S_BIN_DIR}/kube-apiserver" \
		--advertise-address="$CP_ADDRESS" \
		--bind-address="$CP_ADDRESS" \
		--secure-port="$api_port" \
		--cert-dir="$dir/run/apiserver-certs" \
		--tls-cert-file="$pki/apiserver.crt" \
		--tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--etcd-servers="http://127.0.0.1:${etcd_port}" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
		--requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User \
		--requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$pki/front-proxy-client.crt" \
		--proxy-client-key-file="$pki/front-proxy-client.key" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--allow-privileged=true \
		--endpoint-reconciler-type=none \
		"${kubelet_client[@]}" \
		--profiling=false
	wait_for "$dir" kube-apiserver "kube-apiserver to listen on port ${api_port}" port_taken "$api_port" 0A
	flock -u 8
	wait_for "$dir" kube-apiserver "kube-apiserver /readyz" readyz_ok

	flock 8
	local kcm_extra=()
	if [[ -n "$CP_HPA_SYNC_PERIOD" ]]; then
		[[ "$CP_HPA_SYNC_PERIOD" =~ ^[0-9]+(ms|s|m)$ ]] ||
			die "SITG_CP_HPA_SYNC_PERIOD=${CP_HPA_SYNC_PERIOD}: a duration such as 5s"
		kcm_extra+=(--horizontal-pod-autoscaler-sync-period="$CP_HPA_SYNC_PERIOD")
	fi
	kcm_port="$(pick_port)"
	printf '%s\n' "$kcm_port" >"$dir/run/kube-controller-manager.ports"
	start_component "$dir" kube-controller-manager "${K8S_BIN_DIR}/kube-controller-manager" \
		--kubeconfig="$dir/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$kcm_port" \
		--cert-dir="$dir/run/controller-manager-certs" \
		--leader-elect=false \
		--use-service-account-credentials=true \
		--service-account-private-key-file="$pki/sa.key" \
		--root-ca-file="$pki/ca.crt" \
		--controllers="$KCM_CONTROLLERS" \
		"${kcm_extra[@]}" \
		--profiling=false
	wait_for "$dir" kube-controller-manager "kube-controller-manager to listen on port ${kcm_port}" \
		port_taken "$kcm_port" 0A
	flock -u 8
	exec 8>&-
	# Pods can be created once the namespace's `default` ServiceAccount exists.
	wait_for "$dir" kube-controller-manager "the default ServiceAccount of namespace default" \
		kubectl_cmd get serviceaccount default --namespace default

	{
		printf 'KUBECONFIG=%s\n' "$dir/kubeconfig"
		printf 'SITG_KUBE_BIN_DIR=%s\n' "$K8S_BIN_DIR"
		printf 'HELM=%s\n' "$HELM_BIN"
		printf 'SITG_KUBE_API_SERVER=%s\n' "$server"
		# helm keeps its repositories and caches here instead of in $HOME.
		printf 'HELM_CACHE_HOME=%s\n' "$dir/helm/cache"
		printf 'HELM_CONFIG_HOME=%s\n' "$dir/helm/config"
		printf 'HELM_DATA_HOME=%s\n' "$dir/helm/data"
	} >"$dir/env"
	if [[ -n "$owner" ]]; then start_watchdog "$dir" "$owner"; fi
	UP_DONE=1
	log "up: ${server} ready in $((SECONDS - start))s; env in ${dir}/env"
	cat "$dir/env"
}

cmd_down() {
	local dir
	[[ -n "${1:-}" ]] || die "missing DIR argument"
	[[ -d "$1" ]] || die "no such directory: $1"
	dir="$(cd "$1" && pwd -P)"
	stop_plane "$dir"
	log "down: ${dir} stopped (logs in ${dir}/logs)"
}

cmd_status() {
	local dir name state=0
	[[ -n "${1:-}" ]] || die "missing DIR argument"
	[[ -d "$1" ]] || die "no such directory: $1"
	dir="$(cd "$1" && pwd -P)"
	for name in "${COMPONENTS[@]}"; do
		if component_running "$dir" "$name"; then
			printf '%-24s running pid %s port %s\n' "$name" "$(<"$dir/run/$name.pid")" \
				"$(cat "$dir/run/$name.ports" 2>/dev/null || echo '?')"
		else
			printf '%-24s stopped\n' "$name"
			state=1
		fi
	done
	UP_DIR="$dir"
	if [[ -s "$dir/kubeconfig" ]] && readyz_ok; then
		printf '%-24s ok\n' "/readyz"
	else
		printf '%-24s not ok\n' "/readyz"
		state=1
	fi
	return "$state"
}

cmd_bin_dir() { printf '%s\n' "$K8S_BIN_DIR"; }
cmd_helm_path() { printf '%s\n' "$HELM_BIN"; }

main() {
	local sub="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$sub" in
	build) cmd_build "$@" ;;
	node-build) cmd_node_build ;;
	bin-dir) cmd_bin_dir ;;
	helm-path) cmd_helm_path ;;
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	status) cmd_status "$@" ;;
	*) usage ;;
	esac
}

main "$@"
