#!/usr/bin/env python3
"""Plots the Grafana dashboard's panels from Prometheus range queries of a real run.

Grafana itself does not run here; this draws the same PromQL, as Prometheus' query
API answered it, in the dashboard's layout. The data comes from the dashboard test:

    SITG_DASHBOARD_PREVIEW_DIR=/tmp/dash cargo test --features external-tests --test worker dashboard
    python3 scripts/dashboard-preview.py /tmp/dash/panels.json docs/dashboard.png

Needs matplotlib (`pip install matplotlib`).
"""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

UNITS = {"reqps": "req/s", "ops": "ops/s", "s": "seconds", "short": ""}


def legend(template, metric):
    """Grafana's legendFormat: {{label}} replaced by the series' label value."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)


def main(source, target):
    with open(source, encoding="utf-8") as f:
        run = json.load(f)
    panels = run["panels"]
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(16, 3.2 * rows), squeeze=False)
    start = run["start"]
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=10, loc="left")
        drawn = 0
        for target_ in panel["targets"]:
            for series in target_["result"]:
                points = [(float(t) - start, float(v)) for t, v in series["values"] if v != "NaN"]
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(xs, ys, linewidth=1, label=legend(target_["legend"], series["metric"]))
                drawn += 1
        if drawn == 0:
            ax.text(0.5, 0.5, "no data (needs kube-state-metrics)", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
        ax.set_ylabel(UNITS.get(panel["unit"], panel["unit"]), fontsize=8)
        ax.set_xlabel("seconds into the run", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("SITG bot fleet dashboard: its PromQL over a real worker run (Prometheus query API)",
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(target, dpi=80)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} PANELS_JSON OUTPUT_PNG")
    main(sys.argv[1], sys.argv[2])
