#!/usr/bin/env bash
# Seeds fuzz/corpus/webhook with GitHub's example payloads (each prefixed with a zero
# byte: no signature header), from the npm package @octokit/webhooks-examples.
set -euo pipefail
dir="${SITG_WEBHOOK_EXAMPLES:-/var/cache/sitg-bot/npm/node_modules/@octokit/webhooks-examples}"
out="$(cd "$(dirname "$0")" && pwd)/corpus/webhook"
mkdir -p "$out"
python3 - "$dir/api.github.com/index.json" "$out" <<'PY'
import json, sys
index, out = sys.argv[1:]
n = 0
for entry in json.load(open(index)):
    for i, ex in enumerate(entry["examples"]):
        body = json.dumps(ex, separators=(",", ":")).encode()
        open(f"{out}/{entry['name']}-{i}", "wb").write(b"\0" + body)
        n += 1
print(f"{n} seeds in {out}")
PY
