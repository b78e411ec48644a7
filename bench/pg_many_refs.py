"""A commit whose record refers to 20 000 objects it does not write: a
PersistentList of 20 000 persistent objects, appended to. Prints the
median time of one such commit through the server at PORT.

    python bench/pg_many_refs.py PORT [--refs N] [--commits N]"""
import sys, time
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_list import PersistentList
from durus.persistent_dict import PersistentDict

args = sys.argv[1:]
refs, commits = 20000, 7
if '--refs' in args:
    i = args.index('--refs'); refs = int(args[i + 1]); del args[i:i + 2]
if '--commits' in args:
    i = args.index('--commits'); commits = int(args[i + 1]); del args[i:i + 2]
port = int(args[0])
conn = Connection(ClientStorage(host='127.0.0.1', port=port))
root = conn.get_root()
root['list'] = PersistentList(PersistentDict() for _ in range(refs))
conn.commit()
times = []
for _ in range(commits):
    t0 = time.time()
    root['list'].append(PersistentDict())
    conn.commit()
    times.append(time.time() - t0)
times.sort()
print('%d refs: median commit %.3f s (min %.3f, max %.3f) over %d commits'
      % (refs, times[len(times) // 2], times[0], times[-1], commits))
