//! Several `durus serve --storage postgresql://...` on one database behave
//! as one server: a commit is checked under PostgreSQL's commit lock
//! against what changed since the committing client's own sync point, so
//! no acknowledged write is lost and unrelated commits do not conflict.
//! Clients are unmodified Python Durus 4.3 clients.

mod support;

use std::sync::Arc;
use support::durus::ChildServer;
use support::pg;

/// Two servers on a new database of the shared cluster; `None` when the
/// PostgreSQL tests are skipped.
fn two_servers(name: &str) -> Option<(Arc<pg::Cluster>, ChildServer, ChildServer)> {
    let cluster = pg::cluster()?;
    let url = cluster.new_database(name);
    let one = ChildServer::start(&["--storage", &url]);
    let two = ChildServer::start(&["--storage", &url]);
    Some((cluster, one, two))
}

/// X (a client of server one) increments `shared`; while X's commit
/// exchange is open, Z increments it through server two and Y, another
/// client of server one, syncs. Every acknowledged increment must be in
/// the stored value: X's commit is refused (its read of `shared` is
/// stale) or Z's is, never both acknowledged with one lost.
const PYTHON_THREE_CLIENT_RACE: &str = r#"
import sys, threading
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
from durus.error import ConflictError
import durus.client_storage as cs

one, two = int(sys.argv[1]), int(sys.argv[2])
def connect(port):
    return Connection(ClientStorage(host='127.0.0.1', port=port))

setup = connect(one)
setup.get_root()['shared'] = PersistentDict({'n': 0})
setup.commit()

x, y, z = connect(one), connect(one), connect(two)
for c in (x, y, z):
    c.get_root()['shared']['n']

acked = []
def increment(conn, name):
    try:
        conn.get_root()['shared']['n'] += 1
        conn.commit()
        acked.append(name)
    except ConflictError:
        conn.abort()

# Runs once, inside X's commit exchange (after the server sent X's
# invalidations, before X sends its records).
plain_read_int4 = cs.read_int4
armed = [True]
z_thread = threading.Thread(target=increment, args=(z, 'z'))
def read_int4_in_exchange(s):
    n = plain_read_int4(s)
    if armed[0]:
        armed[0] = False
        z_thread.start()
        z_thread.join(2.0)   # acknowledged on the old code; waits for X's lock now
        y.abort()            # Y only syncs
    return n

x.get_root()['shared']['n'] += 1
cs.read_int4 = read_int4_in_exchange
try:
    x.commit()
    acked.append('x')
except ConflictError:
    x.abort()
cs.read_int4 = plain_read_int4
z_thread.join(30.0)
assert not z_thread.is_alive(), 'Z never finished'

check = connect(two)
n = check.get_root()['shared']['n']
print('acked', sorted(acked), 'n', n)
assert n == len(acked), 'acknowledged %r but n = %d' % (acked, n)
print('ok')
"#;

#[test]
fn three_client_race_loses_no_acknowledged_increment() {
    let Some((_cluster, mut one, mut two)) = two_servers("servers_race") else {
        return;
    };
    let out = support::run_python(
        PYTHON_THREE_CLIENT_RACE,
        &[&one.port.to_string(), &two.port.to_string()],
    );
    assert!(out.trim().ends_with("ok"), "{out}");
    assert!(one.stop());
    assert!(two.stop());
}
