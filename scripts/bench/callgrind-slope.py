#!/usr/bin/env python3
"""User-space instructions per delivery from two callgrind runs of one build.

    scripts/bench/callgrind-slope.py SHORT.out SHORT_REQUESTS LONG.out LONG_REQUESTS

Each run is `KEEP_RUN_DIR=1 PROFILER=callgrind DURATION=<s> scripts/bench/profile.sh
webhook` (callgrind.out in the kept run directory; the request count is wrk's "N requests
in" line). The difference between a short and a long run, divided by the extra requests,
cancels start-up and shutdown. SHA-256 is given apart: valgrind runs sha2's portable code,
not the SHA-NI path a real CPU takes, so its count says nothing about production.
Prints one JSON line: instructions per delivery, total, sha2 and the rest.
"""
import json
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*)$")


def counts(path):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=True,
    ).stdout
    total = sha = 0
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = n
        elif "sha2::" in m.group(2):
            sha += n
    return total, sha


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    short, n_short, long_, n_long = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if n_long <= n_short:
        sys.exit("the long run must have served more requests than the short one")
    (t1, s1), (t2, s2) = counts(short), counts(long_)
    per = n_long - n_short
    print(json.dumps({
        "instructions_per_delivery": round((t2 - t1) / per),
        "sha2_per_delivery": round((s2 - s1) / per),
        "without_sha2_per_delivery": round(((t2 - t1) - (s2 - s1)) / per),
        "requests": [n_short, n_long],
    }))


main()
