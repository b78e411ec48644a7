"""Several `durus serve` on one PostgreSQL against one: 8 Python Durus
clients write disjoint keys (each its own PersistentDict) for a fixed
time; prints commits/s and conflicts per commit for each setup.

    python bench/pg_servers.py PORT [PORT ...] [--seconds N] [--clients N]

Clients are spread over the servers given, round robin."""
import sys, threading, time
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
from durus.error import ConflictError

args = sys.argv[1:]
seconds, clients = 10.0, 8
if '--seconds' in args:
    i = args.index('--seconds'); seconds = float(args[i + 1]); del args[i:i + 2]
if '--clients' in args:
    i = args.index('--clients'); clients = int(args[i + 1]); del args[i:i + 2]
ports = [int(p) for p in args]

def connect(port):
    return Connection(ClientStorage(host='127.0.0.1', port=port))

setup = connect(ports[0])
root = setup.get_root()
for i in range(clients):
    if 'k%d' % i not in root:
        root['k%d' % i] = PersistentDict({'n': 0})
setup.commit()

commits = [0] * clients
conflicts = [0] * clients
stop = time.time() + seconds
def client(i):
    c = connect(ports[i % len(ports)])
    while time.time() < stop:
        try:
            c.get_root()['k%d' % i]['n'] += 1
            c.commit()
            commits[i] += 1
        except ConflictError:
            conflicts[i] += 1
            c.abort()

threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
t0 = time.time()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.time() - t0
total, refused = sum(commits), sum(conflicts)
print('servers %d clients %d: %d commits in %.1f s = %.0f commits/s, %d conflicts = %.3f per commit, fewest commits of a client %d'
      % (len(ports), clients, total, elapsed, total / elapsed, refused, refused / max(total, 1), min(commits)))
