#!/usr/bin/env bash
# chart-readme.sh — charts/sitg-bot/README.md from the `# --` comments of values.yaml
# and README.md.gotmpl, with helm-docs (installed once from its Go module, cached).
#
#   scripts/chart-readme.sh            rewrite charts/sitg-bot/README.md
#   scripts/chart-readme.sh --check    exit 1 with a diff when README.md is out of date
#   scripts/chart-readme.sh install    only install helm-docs; prints its path
#
# Environment: HELM_DOCS_VERSION (default 1.14.2), SITG_TOOLS_DIR (see scripts/lib/cache.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cache.sh
. scripts/lib/cache.sh

HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-1.14.2}"
bin_dir="${SITG_TOOLS_DIR}/helm-docs-v${HELM_DOCS_VERSION}/bin"
helm_docs="${bin_dir}/helm-docs"
chart=charts/sitg-bot

if [[ ! -x "$helm_docs" ]]; then
	tmp="$(mktemp -d "${SITG_TOOLS_DIR}/.helm-docs.XXXXXX")"
	GOBIN="$tmp" go install "github.com/norwoodj/helm-docs/cmd/helm-docs@v${HELM_DOCS_VERSION}" >&2
	mkdir -p "$bin_dir"
	mv "$tmp/helm-docs" "$helm_docs"
	rmdir "$tmp"
fi

# One set of flags for writing and checking.
args=(--chart-search-root "$chart" --sort-values-order file --skip-version-footer --log-level warning)

case "${1:-}" in
install)
	echo "$helm_docs"
	;;
--check)
	generated="$(mktemp)"
	trap 'rm -f "$generated"' EXIT
	# --dry-run prints the README instead of writing it.
	"$helm_docs" "${args[@]}" --dry-run >"$generated"
	if ! diff -u "$chart/README.md" "$generated"; then
		echo "$chart/README.md is out of date: run scripts/chart-readme.sh" >&2
		exit 1
	fi
	;;
"")
	"$helm_docs" "${args[@]}"
	;;
*)
	echo "usage: $0 [--check | install]" >&2
	exit 2
	;;
esac
