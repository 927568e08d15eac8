#!/usr/bin/env bash
# image.sh — builds the project's Dockerfile with podman, offline: no registry is pulled
# from. The two base images the Dockerfile names are made locally, under their exact
# names, and cached in podman's image store:
#
#   builder  docker.io/library/rust:<RUST_VERSION>-slim-bookworm
#            a Debian bookworm root made by mmdebstrap from the Debian mirror (gcc,
#            libc6-dev, ca-certificates) plus the host's Rust toolchain (the rustup
#            toolchain of that version, without its docs), CARGO_HOME=/usr/local/cargo
#   runtime  gcr.io/distroless/cc-debian12:nonroot
#            the distroless equivalent: glibc, libgcc, libstdc++, libssl3, netbase, tzdata,
#            CA certificates, /etc/passwd and /etc/group with root, nobody and nonroot
#            (65532), /tmp, no shell; user 65532, working directory /home/nonroot
#
# Usage:
#   scripts/image.sh base          make the two base images when missing
#   scripts/image.sh build         base, then the sitg-bot image and the simulators' image
#                                  (target `sandbox` of the same Dockerfile); prints their
#                                  names and compressed sizes
#   scripts/image.sh next          the second build of the sitg-bot image, for the rollout
#                                  test: `FROM` the built image plus one LABEL
#                                  (io.sitg.build=next), tagged <IMAGE_TAG>-next. The same
#                                  binary under another image ID and tag, made in seconds
#                                  (a second cargo build would take ~10 min)
#   scripts/image.sh name [WHICH]  print the image name: WHICH is sitg-bot (default),
#                                  sitg-sandbox or sitg-bot-next
#   scripts/image.sh archive WHICH FILE   write the image as a docker-archive to FILE
#                                  (what `scripts/node.sh import` loads into containerd)
#
# The build runs `podman build --network=host --pull=never` (cargo reaches crates.io the
# way the host does, trusting the host's CA bundle, which is mounted read-only into every
# RUN step) with runc as the OCI runtime (crun fails on this machine kind). The
# Dockerfile's `RUN --mount=type=cache` keeps the cargo registry and target dir between
# builds, so a rebuild after a source change compiles only the project's crates.
#
# Durations measured on 2 cores shared with other builds (load average 15-20): base
# images cold ~5 min (two mmdebstrap runs ~2 min each, toolchain copy), cached under a
# second; images cold (empty cargo cache, every dependency compiled in release) ~37 min;
# warm after a source change ~10 min (the two project crates again, thin LTO); warm with
# only the recipe changed 11 s (cargo finds nothing to do). Sizes: sitg-bot 17.6 MB,
# sitg-sandbox 12.9 MB compressed (`podman save | gzip | wc -c`).
#
# Environment:
#   IMAGE_TAG        tag of both images (default: the version in Cargo.toml)
#   IMAGE_REVISION   the REVISION build arg (default: git rev-parse HEAD, else unknown)
#   SITG_IMAGE_REBUILD_BASE=1  rebuild the base images even when present
#   DEBIAN_MIRROR    mirror for mmdebstrap (default http://deb.debian.org/debian)
#
# Needs: podman, runc, mmdebstrap, the rustup toolchain named by the Dockerfile's
# RUST_VERSION, gzip (sizes), root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DOCKERFILE="$ROOT/Dockerfile"
HOST_CA=/etc/ssl/certs/ca-certificates.crt
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
REPOSITORY=ghcr.io/sitg/sitg-bot
SANDBOX_REPOSITORY=ghcr.io/sitg/sitg-sandbox

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

pm() { podman --runtime runc "$@"; }

crate_version() {
	awk -F'"' '/^\[package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' "$ROOT/Cargo.toml"
}

rust_version() {
	sed -n 's/^ARG RUST_VERSION=\(.*\)$/\1/p' "$DOCKERFILE" | head -n1
}

tag() { printf '%s' "${IMAGE_TAG:-$(crate_version)}"; }

image_name() {
	case "${1:-sitg-bot}" in
	sitg-bot) printf '%s:%s\n' "$REPOSITORY" "$(tag)" ;;
	sitg-sandbox) printf '%s:%s\n' "$SANDBOX_REPOSITORY" "$(tag)" ;;
	sitg-bot-next) printf '%s:%s-next\n' "$REPOSITORY" "$(tag)" ;;
	*) die "unknown image ${1}: sitg-bot, sitg-sandbox or sitg-bot-next" ;;
	esac
}

builder_image() { printf 'docker.io/library/rust:%s-slim-bookworm\n' "$(rust_version)"; }

have_image() {
	[[ "${SITG_IMAGE_REBUILD_BASE:-0}" != 1 ]] && pm image exists "$1"
}

# Prints the directory of the host's rustup toolchain for Rust $1 (major.minor).
host_toolchain() {
	local want="$1" dir version
	for dir in "${RUSTUP_HOME:-$HOME/.rustup}"/toolchains/*/; do
		[[ -x "$dir/bin/rustc" && -x "$dir/bin/cargo" ]] || continue
		version="$("$dir/bin/rustc" --version | awk '{ print $2 }')"
		if [[ "$version" == "$want" || "$version" == "$want".* ]]; then
			(cd "$dir" && pwd -P)
			return
		fi
	done
	die "no rustup toolchain of Rust ${want} found (the Dockerfile's RUST_VERSION)"
}

# A bookworm root in $1 from the Debian mirror (packages "${@:2}" on top of minbase).
debian_root() {
	local dir="$1" include
	shift
	include="$(
		IFS=,
		printf '%s' "$*"
	)"
	mmdebstrap --quiet --variant=minbase --include="$include" \
		--aptopt='Acquire::Retries "3"' bookworm "$dir" "$MIRROR"
}

build_builder() {
	local name="$1" work="$2" toolchain rootfs="$2/builder"
	toolchain="$(host_toolchain "$(rust_version)")"
	log "builder ${name}: bookworm root (mmdebstrap) + toolchain ${toolchain}"
	debian_root "$rootfs" gcc libc6-dev ca-certificates
	mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo/bin"
	# The toolchain without its documentation (share/doc is 0.8 GB).
	tar -C "$toolchain" --exclude=./share/doc -c . | tar -C "$rootfs/usr/local/rust" -x
	local bin
	for bin in "$rootfs"/usr/local/rust/bin/*; do
		ln -s "../../rust/bin/$(basename "$bin")" "$rootfs/usr/local/cargo/bin/$(basename "$bin")"
	done
	rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
	tar -C "$rootfs" --numeric-owner -c . | pm import \
		--change 'ENV CARGO_HOME=/usr/local/cargo' \
		--change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change "ENV RUST_VERSION=$(rust_version)" \
		--change 'CMD ["bash"]' \
		- "$name" >/dev/null
}

# Files of installed package $2 in root $1 (regular files and symlinks, documentation left out).
package_files() {
	local rootfs="$1" pkg="$2" list="" candidate path
	for candidate in "$rootfs/var/lib/dpkg/info/$pkg.list" "$rootfs/var/lib/dpkg/info/$pkg:amd64.list"; do
		if [[ -s "$candidate" ]]; then list="$candidate"; fi
	done
	[[ -n "$list" ]] || die "package ${pkg} is not installed in ${rootfs}"
	while IFS= read -r path; do
		case "$path" in
		/usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/locale/* | /usr/share/info/*) continue ;;
		esac
		if [[ -L "$rootfs$path" || -f "$rootfs$path" ]]; then printf '.%s\n' "$path"; fi
	done <"$list"
}

build_runtime() {
	local name="$1" work="$2" src="$2/runtime-src" rootfs="$2/runtime" pkg
	log "runtime ${name}: distroless-equivalent root"
	debian_root "$src" ca-certificates libssl3 libstdc++6 netbase tzdata
	mkdir -p "$rootfs"
	# usrmerge: /lib, /lib64, /bin and /sbin point into /usr as in Debian 12 (the
	# package lists name files through them).
	for pkg in lib lib64 bin sbin; do
		if [[ -L "$src/$pkg" ]]; then cp -a "$src/$pkg" "$rootfs/$pkg"; fi
		mkdir -p "$rootfs/usr/$pkg"
	done
	{
		for pkg in libc6 libgcc-s1 libstdc++6 libssl3 netbase tzdata base-files; do
			package_files "$src" "$pkg"
		done
	} >"$work/runtime.files"
	sort -u -o "$work/runtime.files" "$work/runtime.files"
	tar -C "$src" --no-recursion -c -T "$work/runtime.files" | tar -C "$rootfs" -x --keep-directory-symlink
	mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot" "$rootfs/root"
	cp "$src/etc/ssl/certs/ca-certificates.crt" "$rootfs/etc/ssl/certs/ca-certificates.crt"
	chmod 1777 "$rootfs/tmp"
	chmod 0700 "$rootfs/root" "$rootfs/home/nonroot"
	chown 65532:65532 "$rootfs/home/nonroot"
	cat >"$rootfs/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/sbin/nologin
		nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
		nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
	EOF
	cat >"$rootfs/etc/group" <<-'EOF'
		root:x:0:
		nobody:x:65534:
		tty:x:5:
		staff:x:50:
		nonroot:x:65532:
	EOF
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' \
		>"$rootfs/etc/nsswitch.conf"
	tar -C "$rootfs" --numeric-owner -c . | pm import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		--change 'USER 65532' \
		--change 'WORKDIR /home/nonroot' \
		- "$name" >/dev/null
}

cmd_base() {
	local builder start=$SECONDS work
	builder="$(builder_image)"
	if have_image "$builder" && have_image "$RUNTIME_IMAGE"; then
		log "base images cached: ${builder}, ${RUNTIME_IMAGE}"
		return
	fi
	command -v mmdebstrap >/dev/null || die "mmdebstrap is not on PATH (apt-get install mmdebstrap)"
	work="$(mktemp -d /var/tmp/sitg-image-base.XXXXXX)"
	# shellcheck disable=SC2064 # the path is fixed now
	trap "rm -rf '$work'" EXIT
	have_image "$builder" || build_builder "$builder" "$work"
	have_image "$RUNTIME_IMAGE" || build_runtime "$RUNTIME_IMAGE" "$work"
	rm -rf "$work"
	trap - EXIT
	log "base images ready in $((SECONDS - start))s"
}

compressed_size() {
	pm save --format docker-archive "$1" 2>/dev/null | gzip -c | wc -c
}

cmd_build() {
	local start=$SECONDS revision version
	cmd_base
	version="$(crate_version)"
	revision="${IMAGE_REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}"
	local common=(--network=host --pull=never --layers
		--volume "${HOST_CA}:${HOST_CA}:ro"
		--build-arg "VERSION=${version}" --build-arg "REVISION=${revision}"
		-f "$DOCKERFILE")
	log "building $(image_name sitg-bot)"
	pm build "${common[@]}" -t "$(image_name sitg-bot)" "$ROOT" >&2
	log "building $(image_name sitg-sandbox) (target sandbox)"
	pm build "${common[@]}" --target sandbox -t "$(image_name sitg-sandbox)" "$ROOT" >&2
	log "images ready in $((SECONDS - start))s"
	local which
	for which in sitg-bot sitg-sandbox; do
		printf '%s %s bytes compressed\n' "$(image_name "$which")" "$(compressed_size "$(image_name "$which")")"
	done
}

# The second build: the sitg-bot image plus a label, so it has its own image ID (what
# the kubelet reports as a container's imageID) and tag, with the same binary.
cmd_next() {
	local from next work
	from="$(image_name sitg-bot)"
	next="$(image_name sitg-bot-next)"
	pm image exists "$from" || die "${from} is not built (scripts/image.sh build)"
	work="$(mktemp -d /var/tmp/sitg-image-next.XXXXXX)"
	printf 'FROM %s\nLABEL io.sitg.build="next"\n' "$from" >"$work/Containerfile"
	pm build --pull=never --quiet -f "$work/Containerfile" -t "$next" "$work" >/dev/null
	rm -rf "$work"
	printf '%s %s\n' "$next" "$(pm image inspect --format '{{.Id}}' "$next")"
}

cmd_archive() {
	local which="${1:-}" file="${2:-}"
	[[ -n "$which" && -n "$file" ]] || usage
	pm save --quiet --format docker-archive -o "$file" "$(image_name "$which")"
}

main() {
	local sub="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$sub" in
	base) cmd_base ;;
	build) cmd_build ;;
	next) cmd_next ;;
	name) image_name "$@" ;;
	archive) cmd_archive "$@" ;;
	*) usage ;;
	esac
}

main "$@"
