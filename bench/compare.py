#!/usr/bin/env python
"""Side-by-side runs of the benchmark workloads (WORKLOADS.md in the peer
harness folder) with Python Durus 4.3 and durus-rs, on one machine in one
session: for each workload, the Python peer's run and ours alternate
(A B A B ...), REPS times each, each run in fresh processes.  Then prints
a table of medians [min-max] and the ratio ours / Python.

Also in the same session: a bare loopback TCP round trip (`durus bench
pingpong`), the bound of every server workload, and STRESS (Durus 4.3's
own test/stress.py, 4 Python clients, against each server).

Every RESULT line goes to OUT/compare.jsonl with the side, the repetition
and the CPU time others used during the run (foreign_cpu_frac); the table
goes to OUT/compare.md.  Use bench/compare.sh, which builds the release
binary and finds the Python.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

FULL = dict(n_emb=300000, n_srv=100000, batch=1000, k=50000, n6=1000000,
            b6=10000, stress_dur=30.0, stress_clients=4)
QUICK = dict(n_emb=3000, n_srv=2000, batch=1000, k=1000, n6=20000,
             b6=10000, stress_dur=5.0, stress_clients=4)
RUN_TIMEOUT = 900  # bound on any single benchmark process (seconds)


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4]


def wait_quiet(threshold=0.15, max_wait=10.0):
    """Waits (bounded) until the CPUs are less than `threshold` busy."""
    t0 = time.time()
    while True:
        with open("/proc/stat") as f:
            a = [int(x) for x in f.readline().split()[1:9]]
        time.sleep(0.5)
        with open("/proc/stat") as f:
            b = [int(x) for x in f.readline().split()[1:9]]
        total = sum(b) - sum(a)
        idle = (b[3] + b[4]) - (a[3] + a[4])
        busy = (total - idle) / max(1, total)
        if busy < threshold or time.time() - t0 > max_wait:
            return busy


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Runner(object):
    def __init__(self, out_path):
        self.out_path = out_path
        self.failures = 0

    def run(self, side, label, cmd, rep, **extra):
        busy_before = wait_quiet()
        log("%s %s: %s" % (side, label, " ".join(os.path.basename(c)
                                                   for c in cmd[:2]) +
                           " " + " ".join(cmd[2:])))
        j0, own0, t0 = busy_jiffies(), children_cpu(), time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT)
            out, err, rc = p.stdout.decode(), p.stderr.decode(), p.returncode
        except subprocess.TimeoutExpired as e:
            out, err, rc = (e.stdout or b"").decode(), "TIMEOUT", -1
        wall = time.time() - t0
        busy_s = (busy_jiffies() - j0) / float(os.sysconf("SC_CLK_TCK"))
        own_s = children_cpu() - own0
        rec = None
        for line in out.splitlines():
            if line.startswith("RESULT "):
                rec = json.loads(line[7:])
        if rec is None or rc != 0:
            rec = rec or {}
            rec["error"] = "rc=%s %s" % (rc, err[-1500:])
            self.failures += 1
            log("  FAILED: %s" % rec["error"])
        rec.update(extra)
        rec.update(side=side, label=label, rep=rep, run_wall_s=wall,
                   run_own_cpu_s=own_s, busy_before=busy_before,
                   run_foreign_cpu_frac=max(0.0, busy_s - own_s) /
                   (wall * (os.cpu_count() or 1)))
        with open(self.out_path, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        short = {k: rec[k] for k in sorted(rec)
                 if k.endswith("_per_s") or k in (
                     "pack_s", "open_s", "p50_us", "verified")}
        short["foreign"] = round(rec["run_foreign_cpu_frac"], 3)
        log("  -> %s" % json.dumps(short, sort_keys=True))
        return rec


def stress_script(py, work):
    """test/stress.py of the Durus 4.3 sdist (downloaded once)."""
    dest = os.path.join(work, "sdist")
    path = os.path.join(dest, "durus-4.3", "test", "stress.py")
    if os.path.exists(path):
        return path
    os.makedirs(dest, exist_ok=True)
    subprocess.run([py, "-m", "pip", "download", "durus==4.3", "--no-deps",
                    "--no-binary", ":all:", "-d", dest], check=True,
                   capture_output=True, timeout=300)
    with tarfile.open(os.path.join(dest, "durus-4.3.tar.gz")) as t:
        t.extract("durus-4.3/test/stress.py", dest)
    return path


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peer-dir", required=True,
                    help="the peer harness folder (bench_durus.py)")
    ap.add_argument("--python", default=sys.executable,
                    help="a Python with durus 4.3")
    ap.add_argument("--durus", required=True, help="target/release/durus")
    ap.add_argument("--work", default="/tmp/durus-compare",
                    help="scratch folder for the databases")
    ap.add_argument("--out", default=None, help="results folder "
                    "(default: WORK/results)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stress-reps", type=int, default=None,
                    help="STRESS repetitions (default: --reps)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    ap.add_argument("--only", default="rw,pin,w6,stress,pingpong",
                    help="comma-separated phases: rw (W1/W2/W3/W7), pin "
                    "(W3 again with client and server on CPU 0; needs rw), "
                    "w6, stress, pingpong")
    for key, value in FULL.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value),
                        default=None, help="default %s" % value)
    args = ap.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    for key in FULL:
        v = getattr(args, key)
        if v is not None:
            cfg[key] = v
    phases = set(args.only.split(","))
    work = os.path.abspath(args.work)
    out_dir = os.path.abspath(args.out or os.path.join(work, "results"))
    os.makedirs(work, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "compare.jsonl")
    if os.path.exists(out_path):
        os.unlink(out_path)
    peer = os.path.join(os.path.abspath(args.peer_dir), "bench_durus.py")
    R = Runner(out_path)
    py = [args.python, peer]
    rs = [args.durus, "bench"]
    ext = dict(py=".durus", rs=".rsdurus")
    n_emb, n_srv, b = str(cfg["n_emb"]), str(cfg["n_srv"]), str(cfg["batch"])
    t_start = time.time()

    def db(side, name, rep=""):
        return os.path.join(work, "%s-%s%s%s" % (side, name, rep, ext[side]))

    def both(label, rep, make):
        for side, base in (("py", py), ("rs", rs)):
            R.run(side, label, base + make(side), rep)

    def rm(path):
        for s in ("", ".pack", ".prepack", ".server.log", ".server.time"):
            if os.path.exists(path + s):
                os.unlink(path + s)

    for rep in range(1, args.reps + 1):
        if "pingpong" in phases:
            R.run("rs", "pingpong", rs + ["pingpong", "--rounds", "100000"],
                  rep)
        if "rw" not in phases:
            continue
        both("W1 emb", rep, lambda s: [
            "w1", "--target", "emb", "--n", n_emb, "--batch", b,
            "--db", db(s, "w1e", rep)])
        both("W2 emb", rep, lambda s: [
            "w2", "--target", "emb", "--n", n_emb, "--db", db(s, "w1e", rep)])
        both("W7", rep, lambda s: [
            "w7", "--src", db(s, "w1e", rep), "--db", db(s, "w7", rep),
            "--n", n_emb, "--batch", b])
        both("W1 srv", rep, lambda s: [
            "w1", "--target", "srv", "--n", n_srv, "--batch", b,
            "--db", db(s, "w1s", rep)])
        both("W2 srv", rep, lambda s: [
            "w2", "--target", "srv", "--n", n_srv, "--db", db(s, "w1s", rep)])
        both("W3", rep, lambda s: [
            "w3", "--n", n_srv, "--k", str(cfg["k"]),
            "--db", db(s, "w1s", rep)])
        if "pin" in phases:
            # Client and server on one CPU: no cross-CPU wake-up in a
            # round trip (the same for both sides).
            for side, base in (("py", py), ("rs", rs)):
                R.run(side, "W3 1cpu", ["taskset", "-c", "0"] + base + [
                    "w3", "--n", n_srv, "--k", str(cfg["k"]),
                    "--db", db(side, "w1s", rep)], rep)
            R.run("rs", "pingpong 1cpu", ["taskset", "-c", "0"] + rs + [
                "pingpong", "--rounds", "100000"], rep)
        for s in ("py", "rs"):
            rm(db(s, "w1e", rep))
            rm(db(s, "w1s", rep))

    if "w6" in phases:
        n6 = str(cfg["n6"])
        R.run("py", "W6 build", py + ["w1", "--target", "emb", "--n", n6,
                                      "--batch", str(cfg["b6"]),
                                      "--db", db("py", "w6")], 1)
        R.run("rs", "W6 build", rs + ["w6build", "--n", n6, "--batch",
                                      str(cfg["b6"]), "--db", db("rs", "w6")],
              1)
        for rep in range(1, args.reps + 1):
            both("W6 open unpacked", rep, lambda s: [
                "w6open", "--db", db(s, "w6"), "--n", n6,
                "--variant", "unpacked"])
        both("W6 pack", 1, lambda s: ["w6pack", "--db", db(s, "w6"),
                                      "--n", n6])
        for rep in range(1, args.reps + 1):
            both("W6 open packed", rep, lambda s: [
                "w6open", "--db", db(s, "w6"), "--n", n6,
                "--variant", "packed"])
        rm(db("py", "w6"))
        rm(db("rs", "w6"))

    if "stress" in phases:
        src = stress_script(args.python, work)
        driver = os.path.join(here, "stress_compare.py")
        for rep in range(1, (args.stress_reps or args.reps) + 1):
            for side, server in (("py", "python"), ("rs", "rust")):
                R.run(side, "STRESS", [
                    args.python, driver, "--server", server,
                    "--stress-py", src, "--db", db(side, "stress"),
                    "--durus", args.durus, "--clients",
                    str(cfg["stress_clients"]), "--duration",
                    str(cfg["stress_dur"])], rep)

    sys.path.insert(0, here)
    import compare_summary
    table = compare_summary.table(out_path, cfg, time.time() - t_start)
    with open(os.path.join(out_dir, "compare.md"), "w") as f:
        f.write(table)
    sys.stdout.write("\n" + table)
    if R.failures:
        sys.exit("%d run(s) failed; see %s" % (R.failures, out_path))


if __name__ == "__main__":
    main()
