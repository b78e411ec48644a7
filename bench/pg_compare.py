#!/usr/bin/env python
"""durus-rs on PostgreSQL against ZODB + RelStorage on the same PostgreSQL,
in one run: W1-W3 (N, B, K of the "srv" parameters), then W4 and W5 with
C = 8 for D seconds, each repetition running RelStorage, `durus bench
--target emb --storage URL` and `durus bench --target srv --storage URL`
one after the other. Every run is verified by its own harness.

The PostgreSQL server must be running (PG_SETUP.md of the RelStorage
harness); its CPU counts as the run's own (that harness's accounting,
reused here). Run from the repository root, at nice 5 like the server:

  nice -n 5 PYTHON bench/pg_compare.py --relstorage ../shared/bench/relstorage \\
      --pgdata /tmp/pgpeer/data --port 55432 --durus target/release/durus

PYTHON: a Python with RelStorage 4.3 and psycopg2. Writes
OUT/raw.jsonl and prints a median [min-max] table (OUT: --out).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--relstorage", required=True,
                    help="the folder of bench_relstorage.py")
    ap.add_argument("--pgdata", required=True,
                    help="the cluster's data directory (its postmaster.pid)")
    ap.add_argument("--port", default="55432")
    ap.add_argument("--durus", required=True, help="the durus binary")
    ap.add_argument("--out", default="/tmp/durus-pg-compare")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--k", type=int, default=50000)
    ap.add_argument("--c", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--max-quiet-wait", type=float, default=5.0,
                    help="longest wait for an idle machine before each run")
    ap.add_argument("--only", default="rw,w4,w5")
    args = ap.parse_args()

    os.environ["PGPEER_DATA"] = args.pgdata
    os.environ["PGPEER_PORT"] = args.port
    sys.path.insert(0, os.path.abspath(args.relstorage))
    import run_relstorage as rr  # noqa: E402 (the harness's accounting)
    quiet = rr.wait_quiet
    rr.wait_quiet = lambda: quiet(max_wait=args.max_quiet_wait)

    os.makedirs(args.out, exist_ok=True)
    raw = os.path.join(args.out, "raw.jsonl")
    url = "postgresql://postgres@127.0.0.1:%s/durusbench" % args.port
    make_db(args.port, "durusbench")
    n, b, k = str(args.n), str(args.batch), str(args.k)
    c, d = str(args.c), str(args.duration)
    only = args.only.split(",")

    def durus(*a):
        return [args.durus, "bench"] + list(a) + ["--storage", url]

    def run(peer, target, cmd, rep):
        rec = rr.run(raw, peer, cmd, rep, peer_name=peer, target=target,
                     uptime=open("/proc/loadavg").read().split()[0])
        return rec

    for rep in range(1, args.reps + 1):
        if "rw" in only:
            run("relstorage", "", rr.py("ping", "--k", "20000"), rep)
            db = "relbench_rw"
            run("relstorage", "", rr.py("w1", "--n", n, "--batch", b,
                                        "--dbname", db), rep)
            run("relstorage", "", rr.py("w2", "--n", n, "--dbname", db), rep)
            run("relstorage", "", rr.py("w3", "--n", n, "--k", k,
                                        "--dbname", db), rep)
            subprocess.run(rr.py("dropdb", "--dbname", db), check=True)
            for t in ("emb", "srv"):
                run("durus-rs", t, durus("w1", "--target", t, "--n", n,
                                         "--batch", b), rep)
                run("durus-rs", t, durus("w2", "--target", t, "--n", n), rep)
                run("durus-rs", t, durus("w3", "--target", t, "--n", n,
                                         "--k", k), rep)
        if "w4" in only:
            run("relstorage", "", rr.py("w4", "--c", c, "--duration", d,
                                        "--dbname", "relbench_w4"), rep)
            for t in ("emb", "srv"):
                run("durus-rs", t, durus("w4", "--target", t, "--c", c,
                                         "--duration", d), rep)
        if "w5" in only:
            run("relstorage", "", rr.py("w5", "--c", c, "--duration", d,
                                        "--dbname", "relbench_w5",
                                        "--variant", "length"), rep)
            for t in ("emb", "srv"):
                run("durus-rs", t, durus("w5", "--target", t, "--c", c,
                                         "--duration", d, "--variant",
                                         "merge"), rep)
    summarize(raw)


def make_db(port, name):
    """Creates the durus database unless it is there (psql, autocommit)."""
    psql = "/usr/lib/postgresql/15/bin/psql"
    base = [psql, "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-X",
            "-qtAc"]
    have = subprocess.run(
        base + ["SELECT 1 FROM pg_database WHERE datname = '%s'" % name],
        capture_output=True, text=True, check=True).stdout.strip()
    if have != "1":
        subprocess.run(base + ['CREATE DATABASE "%s"' % name], check=True)


METRICS = dict(W1=["objs_per_s"], W2=["objs_per_s", "load_requests"],
               W3=["loads_per_s", "p50_us", "bare_select_per_s",
                   "bare_select_p50_us", "loads_vs_bare_select"],
               W4=["commits_per_s", "conflicts"],
               W5=["incs_per_s", "conflict_rate", "conflicts"],
               PING=["p50_us"])


def summarize(raw):
    groups = {}
    for line in open(raw):
        r = json.loads(line)
        if "error" in r or r.get("verified") is False:
            key = (r.get("workload"), r.get("peer_name"), r.get("target"))
            print("NOT COUNTED (failed or unverified): %s" % (key,))
            continue
        key = (r.get("workload"), r.get("peer_name"), r.get("target"))
        groups.setdefault(key, []).append(r)
    for key in sorted(groups, key=lambda x: tuple(str(v) for v in x)):
        rs = groups[key]
        parts = []
        for m in METRICS.get(key[0], []) + ["foreign_cpu_frac", "loadavg"]:
            vals = [x[m] for x in rs if isinstance(x.get(m), (int, float))]
            if vals:
                parts.append("%s=%.4g [%.4g-%.4g]" % (
                    m, statistics.median(vals), min(vals), max(vals)))
        print("%-5s %-10s %-3s n=%d  %s" % (key[0], key[1], key[2] or "",
                                           len(rs), "  ".join(parts)))


if __name__ == "__main__":
    main()
