#!/usr/bin/env python
"""STRESS against either server: Durus 4.3's own test/stress.py, run
unmodified by C Python Durus client processes for D seconds against
`durus -s` (Python Durus 4.3) or `durus serve` (durus-rs), each serving a
new file.  Prints one line 'RESULT {json}'.

The commits are counted from the clients' output (a 'mutating' line
followed by the next loop's 'verifying' line is a committed transaction),
the same way for both servers; the Python server, run at logging level 20,
also logs one 'Committed' line per commit, which is reported beside it as
a cross-check.  After the run one client checks the whole object graph
(stress.verify_db(all=True)).

stress.py does `from durus.test.stress import Container`, so it is copied
at run time into a temporary overlay package appended to durus.__path__.

usage: stress_compare.py --server python|rust --stress-py PATH --db PATH
           [--durus target/release/durus] [--clients 4] [--duration 30]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RUNNER = r'''
import sys
import durus
durus.__path__.append(%(overlay)r)
from durus.logger import logger
import durus.test.stress as stress
if len(sys.argv) > 1 and sys.argv[1] == "--verify-all":
    from durus.client_storage import ClientStorage
    from durus.connection import Connection
    conn = Connection(ClientStorage(host="127.0.0.1", port=int(sys.argv[2])))
    stress.verify_db(conn, all=True)
    sys.stdout.write("verify-all ok\n")
else:
    stress.main()
'''


def free_port():
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(200):
        port = rnd.randint(20000, 29999)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError("no free port in 20000-29999")


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def parse_client(text):
    commits = conflicts = loops = pending = 0
    for line in text.splitlines():
        line = line.strip()
        if line == "verifying":
            loops += 1
            if pending:
                commits += 1
                pending = 0
        elif line.startswith("mutating"):
            pending = int(line.split()[1])
        elif line == "conflict":
            conflicts += 1
            pending = 0
    return dict(commits=commits, conflicts=conflicts, loops=loops)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--server", choices=("python", "rust"), required=True)
    ap.add_argument("--stress-py", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--durus", default="target/release/durus")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--max-loops", type=int, default=1000000)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="durus-stress-")
    srv = None
    try:
        overlay = os.path.join(tmp, "overlay")
        os.makedirs(os.path.join(overlay, "test"))
        open(os.path.join(overlay, "test", "__init__.py"), "w").close()
        shutil.copy(args.stress_py, os.path.join(overlay, "test", "stress.py"))
        runner = os.path.join(tmp, "stress_client.py")
        with open(runner, "w") as f:
            f.write(RUNNER % dict(overlay=overlay))
        for suffix in ("", ".pack", ".prepack"):
            if os.path.exists(args.db + suffix):
                os.unlink(args.db + suffix)
        port = free_port()
        if args.server == "python":
            cmd = [sys.executable, "-m", "durus", "-s", "--file", args.db,
                   "--host", "127.0.0.1", "--port", str(port),
                   "--logginglevel", "20"]
            fsync = "never (Durus 4.3 never fsyncs a commit)"
        else:
            cmd = [args.durus, "serve", "--file", args.db, "--host",
                   "127.0.0.1", "--port", str(port), "--fsync", "never"]
            fsync = "never"
        logpath = os.path.join(tmp, "server.log")
        log = open(logpath, "wb")
        srv = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if not wait_port(port):
            raise RuntimeError("server not listening: %s" % cmd)
        py = [sys.executable, "-u", runner, "--port", str(port)]
        init = subprocess.run(py + ["--max-loops", "0"], capture_output=True,
                              timeout=300)
        if b"creating object graph" not in init.stdout:
            raise RuntimeError("setup failed: %s" % init.stderr[-2000:])
        log.flush()
        log_offset = os.path.getsize(logpath)
        procs = []
        for i in range(args.clients):
            out = open(os.path.join(tmp, "c%d.out" % i), "wb")
            procs.append((subprocess.Popen(
                py + ["--max-loops", str(args.max_loops)], stdout=out,
                stderr=subprocess.DEVNULL), out))
        t0 = time.time()
        deadline = t0 + args.duration
        while time.time() < deadline and any(p.poll() is None for p, _ in procs):
            time.sleep(min(0.2, max(0.0, deadline - time.time())))
        for p, _ in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p, out in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
            out.close()
        wall = time.time() - t0
        ver = subprocess.run([sys.executable, "-u", runner, "--verify-all",
                              str(port)], capture_output=True, timeout=300)
        verified = b"verify-all ok" in ver.stdout
        rss = status_kb(srv.pid, "VmHWM")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"Q")
        s.close()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(srv.pid, signal.SIGKILL)
            srv.wait(timeout=10)
        srv = None
        log.close()
        per = []
        for i in range(args.clients):
            with open(os.path.join(tmp, "c%d.out" % i)) as f:
                per.append(parse_client(f.read()))
        server_commits = None
        if args.server == "python":
            with open(logpath, "rb") as f:
                f.seek(log_offset)
                text = f.read().decode("utf-8", "replace")
            server_commits = sum(1 for l in text.splitlines()
                                 if l.startswith("Committed"))
        commits = sum(c["commits"] for c in per)
        conflicts = sum(c["conflicts"] for c in per)
        out = dict(peer="durus" if args.server == "python" else "durus-rs",
                   workload="STRESS", server=args.server, fsync=fsync,
                   clients=args.clients, duration=args.duration, wall_s=wall,
                   client_commits=commits,
                   commits_per_s=commits / args.duration,
                   server_commits=server_commits, conflicts=conflicts,
                   conflict_rate=conflicts / max(1, commits + conflicts),
                   loops=sum(c["loops"] for c in per),
                   per_client=[c["commits"] for c in per],
                   verified=verified, file_size=os.path.getsize(args.db),
                   server_rss_kb=rss)
        sys.stdout.write("RESULT " + json.dumps(out, sort_keys=True) + "\n")
        if not verified:
            sys.stderr.write(ver.stderr.decode("utf-8", "replace")[-3000:])
            sys.exit("STRESS verification failed")
    finally:
        if srv is not None and srv.poll() is None:
            os.kill(srv.pid, signal.SIGKILL)
            srv.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
        for suffix in ("", ".pack", ".prepack"):
            if os.path.exists(args.db + suffix):
                os.unlink(args.db + suffix)


if __name__ == "__main__":
    main()
