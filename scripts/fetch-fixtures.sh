#!/usr/bin/env bash
# Installs GitHub's example webhook payloads (npm package @octokit/webhooks-examples)
# into a fixed cache folder outside the clone. The payloads are never copied into the
# repository. Idempotent: a second run only checks the version.
#
#   scripts/fetch-fixtures.sh            install into $SITG_FIXTURES_DIR (default: see scripts/lib/cache.sh)
#
# The worker's tests and `sitg-sandbox dev` read them from
# $SITG_FIXTURES_DIR/node_modules/@octokit/webhooks-examples (or SITG_WEBHOOK_EXAMPLES).
set -euo pipefail

VERSION="${WEBHOOKS_EXAMPLES_VERSION:-7.6.1}"
# shellcheck source=scripts/lib/cache.sh
. "$(dirname "$0")/lib/cache.sh"
DIR="$SITG_FIXTURES_DIR"
PKG="$DIR/node_modules/@octokit/webhooks-examples"

installed=""
if [[ -f "$PKG/package.json" ]]; then
  installed="$(node -p "require('$PKG/package.json').version" 2>/dev/null || true)"
fi
if [[ "$installed" == "$VERSION" && -f "$PKG/api.github.com/index.json" ]]; then
  echo "[fixtures] @octokit/webhooks-examples $VERSION already in $DIR" >&2
  exit 0
fi
command -v npm >/dev/null || { echo "[fixtures] error: npm is required (Node.js)" >&2; exit 1; }
mkdir -p "$DIR"
echo "[fixtures] installing @octokit/webhooks-examples@$VERSION into $DIR" >&2
npm install --prefix "$DIR" --no-audit --no-fund --silent "@octokit/webhooks-examples@$VERSION" >&2
test -f "$PKG/api.github.com/index.json" || { echo "[fixtures] error: index.json missing after install" >&2; exit 1; }
