# shellcheck shell=bash
# Where the project's caches live (sourced by scripts/*.sh): /var/cache/sitg-bot when it
# is writable (root, CI), else the user's cache directory. Sets and exports the
# variables every other script and the tests read, unless they are already set.
if [[ -z "${SITG_CACHE_DIR:-}" ]]; then
  if mkdir -p /var/cache/sitg-bot 2>/dev/null && [[ -w /var/cache/sitg-bot ]]; then
    SITG_CACHE_DIR=/var/cache/sitg-bot
  else
    SITG_CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/sitg-bot"
    mkdir -p "$SITG_CACHE_DIR"
  fi
fi
export SITG_CACHE_DIR
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SITG_CACHE_DIR/cargo-target}"
export SITG_FIXTURES_DIR="${SITG_FIXTURES_DIR:-$SITG_CACHE_DIR/npm}"
export SITG_WEBHOOK_EXAMPLES="${SITG_WEBHOOK_EXAMPLES:-$SITG_FIXTURES_DIR/node_modules/@octokit/webhooks-examples}"
export SITG_TOOLS_DIR="${SITG_TOOLS_DIR:-$SITG_CACHE_DIR/tools}"
