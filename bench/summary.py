#!/usr/bin/env python3
"""bench/summary.py DIR [PREFIX...]: the median, minimum and maximum of
pulse loadgen's figures over the runs of each label in DIR (files named
pulse-LABEL-N.json, N the run), one line per label: events sent a second,
share counted, latency to the dashboard (p50, p99), server CPU per event
sent after the ramp, server cores and RSS, and RSS per connection."""
import json, os, re, statistics, sys

d = sys.argv[1]
prefixes = sys.argv[2:]
runs = {}
for f in sorted(os.listdir(d)):
    m = re.fullmatch(r"pulse-(.+)-(\d+)\.json", f)
    if not m or (prefixes and not any(m[1].startswith(p) for p in prefixes)):
        continue
    try:
        r = json.load(open(os.path.join(d, f)))
    except (ValueError, OSError):
        continue
    runs.setdefault(m[1], []).append(r)

def fig(rs, get, fmt):
    vals = [v for v in (get(r) for r in rs) if v is not None]
    if not vals:
        return "-"
    return (fmt % statistics.median(vals)) + " (" + (fmt % min(vals)) + "–" + (fmt % max(vals)) + ")"

cols = [
    ("sent/s", lambda r: r.get("sentPerSecond"), "%.0f"),
    ("counted", lambda r: r.get("countedRatio"), "%.4f"),
    ("p50 ms", lambda r: r.get("latency", {}).get("p50Ms"), "%.0f"),
    ("p99 ms", lambda r: r.get("latency", {}).get("p99Ms"), "%.0f"),
    ("CPU µs/event", lambda r: r.get("serverCpuPerEventSentUs"), "%.2f"),
    ("cores", lambda r: r.get("serverCpuCores"), "%.2f"),
    ("RSS MB", lambda r: r.get("serverRssMB"), "%.0f"),
    ("RSS KB/conn", lambda r: r["serverRssMB"] * 1024 / r["connected"] if r.get("connected") and r.get("serverRssMB") else None, "%.1f"),
]
print("| label | runs | " + " | ".join(c[0] for c in cols) + " |")
print("| --- " * (len(cols) + 2) + "|")
for label, rs in runs.items():
    print(f"| {label} | {len(rs)} | " + " | ".join(fig(rs, g, f) for _, g, f in cols) + " |")
