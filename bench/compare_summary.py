#!/usr/bin/env python
"""Table of a compare.py run: for each workload and metric, the median
[min-max] of each side's runs and the ratio of the medians, ours / Python.

usage: compare_summary.py OUT/compare.jsonl
"""
import json
import statistics
import sys

# (label, metric, unit, higher_is_better)
ROWS = [
    ("W1 emb", "objs_per_s", "objects/s", True),
    ("W1 emb", "file_size", "file bytes", False),
    ("W1 emb", "client_rss_kb", "client peak RSS KiB", False),
    ("W1 srv", "objs_per_s", "objects/s", True),
    ("W1 srv", "server_rss_kb", "server peak RSS KiB", False),
    ("W2 emb", "objs_per_s", "objects/s", True),
    ("W2 emb", "open_s", "open s", False),
    ("W2 emb", "client_rss_kb", "client peak RSS KiB", False),
    ("W2 srv", "objs_per_s", "objects/s", True),
    ("W2 srv", "load_requests", "load round trips", None),
    ("W2 srv", "server_rss_kb", "server peak RSS KiB", False),
    ("W3", "loads_per_s", "loads/s", True),
    ("W3", "p50_us", "p50 us", False),
    ("W3", "p99_us", "p99 us", False),
    ("W3", "p999_us", "p99.9 us", False),
    ("W3", "storage_loads_per_op", "server loads per op", None),
    ("W3", "sync_rt_p50_us", "bare server round trip (sync) p50 us", None),
    ("W3 1cpu", "loads_per_s", "loads/s", True),
    ("W3 1cpu", "p50_us", "p50 us", False),
    ("W3 1cpu", "p99_us", "p99 us", False),
    ("W3 1cpu", "sync_rt_p50_us", "bare server round trip (sync) p50 us",
     None),
    ("W6 build", "objs_per_s", "objects/s (1 run)", True),
    ("W6 open unpacked", "open_s", "open s", False),
    ("W6 open unpacked", "rss_after_open_kb", "RSS after open KiB", False),
    ("W6 open unpacked", "first_lookup_s", "first lookup s", False),
    ("W6 pack", "pack_s", "pack s (1 run)", False),
    ("W6 open packed", "open_s", "open s", False),
    ("W6 open packed", "rss_after_open_kb", "RSS after open KiB", False),
    ("W7", "pack_s", "pack s", False),
    ("W7", "size_before", "bytes before", False),
    ("W7", "size_after", "bytes after", False),
    ("W7", "client_rss_kb", "client peak RSS KiB", False),
    ("STRESS", "commits_per_s", "commits/s (clients' count)", True),
    ("STRESS", "conflict_rate", "conflict rate", None),
    ("STRESS", "server_rss_kb", "server peak RSS KiB", False),
    ("pingpong", "p50_us", "bare loopback round trip p50 us", None),
    ("pingpong", "mean_us", "bare loopback round trip mean us", None),
    ("pingpong 1cpu", "p50_us", "bare loopback round trip p50 us", None),
]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "%.1f" % v
    if abs(v) >= 0.01:
        return "%.3f" % v
    return "%.2g" % v


def cell(values):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return "%s [%s-%s]" % (fmt(med), fmt(min(values)), fmt(max(values)))


def table(path, cfg=None, seconds=None):
    recs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    ok = [r for r in recs if "error" not in r and r.get("verified", True)]
    failed = len(recs) - len(ok)
    out = []
    if cfg:
        out.append("Parameters: " + ", ".join(
            "%s=%s" % kv for kv in sorted(cfg.items())))
    if seconds:
        out.append("Session: %.0f s; %d runs, %d failed or unverified "
                   "(left out)." % (seconds, len(recs), failed))
    fsyncs = sorted({str(r.get("fsync")) for r in ok
                     if r.get("side") == "rs" and r.get("fsync")})
    out.append("durus-rs fsync: %s. Python Durus 4.3 never fsyncs a commit."
               % ", ".join(fsyncs))
    foreign = [r.get("run_foreign_cpu_frac", 0) for r in recs]
    if foreign:
        out.append("CPU used by other processes during the runs: median "
                   "%.1f %%, max %.1f %% of wall x CPUs."
                   % (100 * statistics.median(foreign), 100 * max(foreign)))
    out.append("")
    out.append("| workload | metric | Python Durus 4.3 | durus-rs | "
               "ours / Python |")
    out.append("|---|---|---|---|---|")
    for label, metric, unit, higher in ROWS:
        vals = {}
        for side in ("py", "rs"):
            vals[side] = [r[metric] for r in ok if r.get("label") == label
                          and r.get("side") == side
                          and isinstance(r.get(metric), (int, float))]
        if not vals["py"] and not vals["rs"]:
            continue
        ratio = "-"
        if vals["py"] and vals["rs"]:
            p, o = statistics.median(vals["py"]), statistics.median(vals["rs"])
            if p:
                r = o / p
                ratio = ("%.3g" % r) if r < 100 else "{:,.0f}".format(r)
                if higher is not None and o and p:
                    gain = (r if higher else 1 / r)
                    word = "better" if gain >= 1 else "worse"
                    gain = gain if gain >= 1 else 1 / gain
                    ratio += " (%s %s)" % (("%.3gx" % gain) if gain < 100
                                           else "{:,.0f}x".format(gain), word)
        out.append("| %s | %s | %s | %s | %s |" % (
            label, unit, cell(vals["py"]), cell(vals["rs"]), ratio))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table(sys.argv[1]))
