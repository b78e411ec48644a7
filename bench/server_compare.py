"""Runs one Python Durus 4.3 client workload against a storage server and
prints JSON lines of figures. Used to compare `durus serve` (durus-rs) with
Python Durus's `durus -s`; the same client code runs against both.

usage: python server_compare.py SERVER_KIND PORT [N]
  SERVER_KIND is a label; the server must already listen on 127.0.0.1:PORT
  and hold an empty database. Workloads follow W2/W3/W4 of the benchmark
  definitions (WORKLOADS.md in the peer harness folder, BENCH_DIR) with
  smaller sizes: N items (default 20000), K = N/2 point loads, D = 3 s.
"""
import json, os, random, subprocess, sys, time
sys.path.insert(0, os.environ.get("BENCH_DIR", "/work/shared/bench"))
from durus.btree import BTree
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.error import ConflictError
from bench_model_durus import Parent, Item, Counter

kind, port = sys.argv[1], int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
K = N // 2
D = 3.0

def conn(cache=10000):
    return Connection(ClientStorage(host="127.0.0.1", port=port), cache_size=cache)

def emit(**kw):
    kw["server"] = kind
    print(json.dumps(kw), flush=True)

# Setup: N items in a BTree, committed 1000 at a time.
c = conn()
root = c.get_root()
root["parent"] = Parent("parent")
root["items"] = BTree()
c.commit()
t0 = time.perf_counter()
for i in range(N):
    root["items"][i] = Item(i, ("%0100d" % i), root["parent"])
    if i % 1000 == 999:
        c.commit()
c.commit()
emit(workload="insert", objects_per_s=N / (time.perf_counter() - t0))
oids = [root["items"][i]._p_oid for i in range(N)]
c.get_storage().close()

# W2-like cold traversal: one load per object.
c = conn(N + 10000)
items = c.get_root()["items"]
t0 = time.perf_counter()
total = 0
for k, item in items.items():
    total += item.n
assert total == N * (N - 1) // 2
emit(workload="cold_traversal", objects_per_s=N / (time.perf_counter() - t0))
c.get_storage().close()

# Bulk cold read: every item record through bulk loads of 100 oids.
s = ClientStorage(host="127.0.0.1", port=port)
t0 = time.perf_counter()
got = 0
for j in range(0, N, 100):
    got += len(list(s.bulk_load(oids[j:j + 100])))
assert got == N
emit(workload="bulk_cold_read", objects_per_s=N / (time.perf_counter() - t0))
s.close()

# W3-like point loads with a tiny cache.
order = random.Random(42).sample(range(N), K)
c = conn(100)
t0 = time.perf_counter()
for j, i in enumerate(order):
    assert c.get(oids[i]).n == i
    if j % 100 == 99:
        c.abort()
emit(workload="point_loads", loads_per_s=K / (time.perf_counter() - t0))
c.get_storage().close()

# W4-like disjoint commits with C processes for D seconds.
WORKER = r'''
import sys, time
from durus.client_storage import ClientStorage
from durus.connection import Connection
sys.path.insert(0, sys.argv[4])
import bench_model_durus
port, idx, start, D = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[5])
c = Connection(ClientStorage(host="127.0.0.1", port=port), cache_size=1000)
obj = c.get_root()["c%d" % idx]; obj.value; c.abort()
while time.time() < start: time.sleep(0.001)
ok = 0
while time.time() < start + D:
    obj.value += 1; c.commit(); ok += 1
print(ok)
'''
for C in (1, 2, 4, 8):
    c = conn()
    r = c.get_root()
    for i in range(C):
        r["c%d" % i] = Counter()
    c.commit()
    start = time.time() + 1.0 + 0.3 * C
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(i),
                               repr(start), os.environ.get("BENCH_DIR", "/work/shared/bench"), str(D)],
                              stdout=subprocess.PIPE) for i in range(C)]
    counts = [int(p.communicate(timeout=60)[0]) for p in procs]
    c.abort()
    for i in range(C):
        assert r["c%d" % i].value == counts[i]
    emit(workload="commits", clients=C, commits_per_s=sum(counts) / D)
    c.get_storage().close()
