#!/usr/bin/env bash
# metrics-stack.sh — the autoscaling metrics pipeline, built from upstream Go modules:
# a Prometheus server with Kubernetes service discovery (Debian's prometheus 2.42 is
# built without kubernetes_sd_configs) and prometheus-adapter, which serves
# custom.metrics.k8s.io from Prometheus queries for the HPA.
#
# Usage:
#   scripts/metrics-stack.sh build              build missing binaries into the versioned cache
#                                               (well under a second when cached; minutes cold)
#   scripts/metrics-stack.sh prometheus-path    print the path of the prometheus binary
#   scripts/metrics-stack.sh adapter-path       print the path of the prometheus-adapter binary
#   scripts/metrics-stack.sh keda-crds          print the directory of KEDA's CRD YAML
#                                               (config/crd/bases of the Go module
#                                               github.com/kedacore/keda/v2), fetching it once
#
# Environment:
#   PROMETHEUS_MODULE_VERSION  version of the Go module github.com/prometheus/prometheus
#                              (default v0.316.0: Prometheus 3.16.0; the module is numbered
#                              v0.3MM.P for release 3.MM.P)
#   ADAPTER_VERSION            prometheus-adapter release (default v0.12.0)
#   KEDA_VERSION               KEDA release whose CRDs the chart is checked against
#                              (default v2.21.0)
#   SITG_TOOLS_DIR             binary cache root (default /var/cache/sitg-bot/tools); the
#                              binaries land in $SITG_TOOLS_DIR/prometheus-$VERSION/bin and
#                              $SITG_TOOLS_DIR/prometheus-adapter-$VERSION/bin
#   GOPATH/GOMODCACHE/GOCACHE are honoured as Go itself does.
#
# Needs: go (>= the go line of the modules built), coreutils, util-linux (flock).
set -euo pipefail

PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
ADAPTER_VERSION="${ADAPTER_VERSION:-v0.12.0}"
KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
TOOLS_DIR="${SITG_TOOLS_DIR:-/var/cache/sitg-bot/tools}"
PROM_DIR="${TOOLS_DIR}/prometheus-${PROMETHEUS_MODULE_VERSION}"
PROM_BIN="${PROM_DIR}/bin/prometheus"
ADAPTER_DIR="${TOOLS_DIR}/prometheus-adapter-${ADAPTER_VERSION}"
ADAPTER_BIN="${ADAPTER_DIR}/bin/prometheus-adapter"

log() { printf '[metrics-stack] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

timed() {
	local label="$1" start=$SECONDS
	shift
	log "${label}: started"
	"$@"
	log "${label}: done in $((SECONDS - start))s"
}

# Prints field $3 (GoMod, Dir, ...) of `go mod download -json` for module $1 at version $2.
module_field() {
	go mod download -json "$1@$2" | sed -n "s/^[[:space:]]*\"$3\": \"\\(.*\\)\",\$/\\1/p"
}

# The release a Prometheus module version stands for: v0.316.0 -> 3.16.0.
prometheus_release() {
	local v="${1#v0.}" minor patch
	minor="${v%%.*}"
	patch="${v#*.}"
	printf '%s.%s.%s' "${minor:0:1}" "$((10#${minor:1}))" "$patch"
}

# Writes a tools module into $1 that requires module $2 at $3 with exactly the
# dependency versions of the module's own go.mod (its require blocks, copied) and go.sum.
write_tools_module() {
	local dir="$1" module="$2" version="$3" gomod src
	gomod="$(module_field "$module" "$version" GoMod)"
	src="$(module_field "$module" "$version" Dir)"
	[[ -s "$gomod" && -d "$src" ]] || die "could not download ${module}@${version} from the Go module proxy"
	mkdir -p "$dir"
	{
		printf 'module sitg-bot/tools/%s\n\n' "${module##*/}"
		# Everything but the module line and toolchain lines: go line, requires, replaces.
		sed -e '/^module /d' -e '/^toolchain /d' "$gomod"
		printf '\nrequire %s %s\n' "$module" "$version"
	} >"$dir/go.mod"
	cp -f "$src/go.sum" "$dir/go.sum"
	chmod u+w "$dir/go.sum"
	# The module's own go.sum lacks the hashes of the module itself.
	(cd "$dir" && go mod download "$module")
}

# Runs `go build "${@:2}"` inside module directory $1.
go_build_in() {
	local dir="$1"
	shift
	(cd "$dir" && go build "$@")
}

build_prometheus() {
	local src tmp release ldflags
	if [[ -x "$PROM_BIN" ]]; then
		log "prometheus ${PROMETHEUS_MODULE_VERSION}: cached"
		return
	fi
	release="$(prometheus_release "$PROMETHEUS_MODULE_VERSION")"
	src="${PROM_DIR}/src"
	timed "tools module for github.com/prometheus/prometheus ${PROMETHEUS_MODULE_VERSION}" \
		write_tools_module "$src" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
	mkdir -p "${PROM_DIR}/bin"
	tmp="$(mktemp -d "${PROM_DIR}/bin/.build.XXXXXX")"
	# The release build stamps its version (shown by --version and /api/v1/status/buildinfo).
	ldflags="-s -w -X github.com/prometheus/common/version.Version=${release}"
	ldflags+=" -X github.com/prometheus/common/version.Branch=release"
	ldflags+=" -X github.com/prometheus/common/version.BuildUser=sitg-bot"
	# Without the builtinassets tag the web UI is not embedded; the HTTP API and the
	# scrape loop, which is all the tests use, are the same. remove_all_sd +
	# enable_kubernetes_sd keep Kubernetes service discovery (and the file, static and
	# HTTP ones) and leave out the cloud SDKs, which are most of a cold build.
	timed "go build prometheus ${release} (module ${PROMETHEUS_MODULE_VERSION})" \
		go_build_in "$src" -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags="$ldflags" \
		-o "$tmp/prometheus" github.com/prometheus/prometheus/cmd/prometheus
	mv -f "$tmp/prometheus" "$PROM_BIN"
	rmdir "$tmp"
}

build_adapter() {
	local src tmp
	if [[ -x "$ADAPTER_BIN" ]]; then
		log "prometheus-adapter ${ADAPTER_VERSION}: cached"
		return
	fi
	src="${ADAPTER_DIR}/src"
	# `go install sigs.k8s.io/prometheus-adapter/cmd/adapter@v0.12.0` is refused by the
	# module proxy here (403 on its version list); a module of our own resolves it.
	timed "tools module for sigs.k8s.io/prometheus-adapter ${ADAPTER_VERSION}" \
		write_tools_module "$src" sigs.k8s.io/prometheus-adapter "$ADAPTER_VERSION"
	mkdir -p "${ADAPTER_DIR}/bin"
	tmp="$(mktemp -d "${ADAPTER_DIR}/bin/.build.XXXXXX")"
	timed "go build prometheus-adapter ${ADAPTER_VERSION}" \
		go_build_in "$src" -trimpath -ldflags="-s -w" -o "$tmp/adapter" sigs.k8s.io/prometheus-adapter/cmd/adapter
	mv -f "$tmp/adapter" "$ADAPTER_BIN"
	rmdir "$tmp"
}

# KEDA's CRDs come with its Go module; the module cache keeps them.
cmd_keda_crds() {
	local dir
	command -v go >/dev/null || die "go is not on PATH"
	dir="$(module_field github.com/kedacore/keda/v2 "$KEDA_VERSION" Dir)"
	[[ -s "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" ]] ||
		die "github.com/kedacore/keda/v2@${KEDA_VERSION} has no config/crd/bases/keda.sh_scaledobjects.yaml"
	printf '%s\n' "$dir/config/crd/bases"
}

cmd_build() {
	if [[ -x "$PROM_BIN" && -x "$ADAPTER_BIN" ]]; then
		log "build: all binaries cached (${PROM_BIN}, ${ADAPTER_BIN})"
		return
	fi
	command -v go >/dev/null || die "go is not on PATH"
	export CGO_ENABLED=0
	mkdir -p "$TOOLS_DIR"
	local start=$SECONDS
	exec 9>"${TOOLS_DIR}/.metrics-stack.lock"
	flock 9
	build_adapter
	build_prometheus
	cmd_keda_crds >/dev/null
	flock -u 9
	log "build: all binaries ready in $((SECONDS - start))s (${PROM_BIN}, ${ADAPTER_BIN})"
}

main() {
	local sub="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$sub" in
	build) cmd_build "$@" ;;
	prometheus-path) printf '%s\n' "$PROM_BIN" ;;
	adapter-path) printf '%s\n' "$ADAPTER_BIN" ;;
	keda-crds) cmd_keda_crds ;;
	*) usage ;;
	esac
}

main "$@"
