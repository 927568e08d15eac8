#!/usr/bin/env python3
"""Renders the node autoscaling test's timeline (the JSON it writes to
SITG_AUTOSCALING_TIMELINE) as a markdown table and an SVG plot, with the standard
library only.

Usage: autoscaling-render.py TIMELINE.json TABLE.md PLOT.svg

The plot has two panels sharing the time axis: the average outbox lag the HPA sees
(seconds, with the target as a dashed line) and the replicas (HPA desired, HPA
current, Ready pods) with actions/s on a right-hand axis.
"""

import json
import sys
from xml.sax.saxutils import escape

W, H = 900, 560
LEFT, RIGHT, TOP = 70, 70, 40
PANEL_H, GAP = 200, 70
COLORS = {
    "lag": "#c0392b",
    "target": "#7f8c8d",
    "desired": "#2c3e50",
    "current": "#2980b9",
    "ready": "#27ae60",
    "rate": "#e67e22",
}


def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def table(doc):
    rows = [
        "| t (s) | phase | avg lag (s) | max lag (s) | HPA desired | HPA current | "
        "Deployment replicas | Ready pods | actions/s | pending |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in doc["samples"]:
        rows.append(
            f"| {s['t']:.0f} | {s['phase']} | {fmt(s['lag_avg'])} | {fmt(s['lag_max'])} | "
            f"{s['hpa_desired']} | {s['hpa_current']} | {s['deployment_replicas']} | "
            f"{s['ready_pods']} | {s['actions_per_s']:.1f} | {s['pending']} |"
        )
    return "\n".join(rows) + "\n"


def nice_max(v):
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if v <= step * 5:
            return step * 5, step
    return v, v / 5


def svg(doc):
    samples = doc["samples"]
    t_max = max(s["t"] for s in samples) or 1.0
    x_w = W - LEFT - RIGHT
    x = lambda t: LEFT + t / t_max * x_w  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">'
        f"BotFleet autoscaling on outbox lag (min {doc['min_replicas']}, max "
        f"{doc['max_replicas']}, target {doc['target_lag_seconds']:g} s, scale-down window "
        f"{doc['scale_down_window_seconds']} s)</text>",
    ]

    def panel(top, y_max, step, label):
        bottom = top + PANEL_H
        y = lambda v: bottom - v / y_max * PANEL_H  # noqa: E731
        out.append(
            f'<rect x="{LEFT}" y="{top}" width="{x_w}" height="{PANEL_H}" '
            f'fill="none" stroke="#999"/>'
        )
        v = 0.0
        while v <= y_max + 1e-9:
            out.append(
                f'<line x1="{LEFT}" x2="{LEFT + x_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                f'stroke="#eee"/>'
            )
            out.append(
                f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
            )
            v += step
        out.append(
            f'<text transform="translate(18,{top + PANEL_H / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
        t_step = nice_max(t_max)[1]
        t = 0.0
        while t <= t_max + 1e-9:
            out.append(
                f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle">{t:g}</text>'
            )
            t += t_step
        return y

    def line(points, y, color, dash=None, width=2):
        pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points if v is not None)
        if not pts:
            return
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{color}" '
            f'stroke-width="{width}"{extra}/>'
        )

    def legend(top, items):
        lx = LEFT + 10
        for name, color, dash in items:
            extra = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(
                f'<line x1="{lx}" x2="{lx + 22}" y1="{top + 14}" y2="{top + 14}" '
                f'stroke="{color}" stroke-width="2"{extra}/>'
            )
            out.append(f'<text x="{lx + 27}" y="{top + 18}">{escape(name)}</text>')
            lx += 40 + 7 * len(name)

    # Panel 1: lag.
    top1 = TOP
    lag_peak = max([s["lag_max"] or 0 for s in samples] + [doc["target_lag_seconds"]])
    y_max, step = nice_max(lag_peak * 1.1)
    y1 = panel(top1, y_max, step, "outbox lag (s)")
    line([(s["t"], s["lag_avg"]) for s in samples], y1, COLORS["lag"])
    line(
        [(0, doc["target_lag_seconds"]), (t_max, doc["target_lag_seconds"])],
        y1,
        COLORS["target"],
        dash="6,4",
    )
    legend(top1, [("average lag (HPA's metric)", COLORS["lag"], None),
                  ("target", COLORS["target"], "6,4")])

    # Panel 2: replicas and actions/s.
    top2 = TOP + PANEL_H + GAP
    r_max = doc["max_replicas"] + 1
    y2 = panel(top2, r_max, 1, "replicas")
    line([(s["t"], s["hpa_desired"]) for s in samples], y2, COLORS["desired"], dash="4,3")
    line([(s["t"], s["hpa_current"]) for s in samples], y2, COLORS["current"])
    line([(s["t"], s["ready_pods"]) for s in samples], y2, COLORS["ready"], width=1.5)
    rate_peak = max(s["actions_per_s"] for s in samples) or 1.0
    rate_max, rate_step = nice_max(rate_peak * 1.1)
    bottom2 = top2 + PANEL_H
    y_rate = lambda v: bottom2 - v / rate_max * PANEL_H  # noqa: E731
    line([(s["t"], s["actions_per_s"]) for s in samples], y_rate, COLORS["rate"], width=1.5)
    v = 0.0
    while v <= rate_max + 1e-9:
        out.append(
            f'<text x="{LEFT + x_w + 6}" y="{y_rate(v) + 4:.1f}" fill="{COLORS["rate"]}">{v:g}</text>'
        )
        v += rate_step
    out.append(
        f'<text transform="translate({W - 14},{top2 + PANEL_H / 2}) rotate(90)" '
        f'text-anchor="middle" fill="{COLORS["rate"]}">actions/s</text>'
    )
    legend(top2, [("HPA desired", COLORS["desired"], "4,3"),
                  ("HPA current", COLORS["current"], None),
                  ("Ready pods", COLORS["ready"], None),
                  ("actions/s (right axis)", COLORS["rate"], None)])
    out.append(
        f'<text x="{LEFT + x_w / 2}" y="{bottom2 + 36}" text-anchor="middle">'
        f"seconds since the backlog was enqueued</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    if not doc.get("samples"):
        sys.exit(f"{sys.argv[1]}: no samples")
    with open(sys.argv[2], "w") as f:
        f.write(table(doc))
    with open(sys.argv[3], "w") as f:
        f.write(svg(doc))


if __name__ == "__main__":
    main()
