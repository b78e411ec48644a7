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

/// 8 Python clients, half on each server: each commit increments the
/// client's own counter and every fourth also a shared one, in the same
/// transaction; conflicts are retried. Every counter ends exact to the
/// clients' journals.
const PYTHON_SHARED_COUNTER: &str = r#"
import sys, threading
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
from durus.error import ConflictError

one, two = int(sys.argv[1]), int(sys.argv[2])
CLIENTS, COMMITS = 8, 40
def connect(port):
    return Connection(ClientStorage(host='127.0.0.1', port=port))

setup = connect(one)
root = setup.get_root()
root['shared'] = PersistentDict({'n': 0})
for i in range(CLIENTS):
    root['own%d' % i] = PersistentDict({'n': 0})
setup.commit()

journal = [[0, 0] for _ in range(CLIENTS)]
conflicts = [0] * CLIENTS
errors = []
def client(i):
    try:
        c = connect(one if i % 2 == 0 else two)
        done, attempts = 0, 0
        while done < COMMITS and attempts < COMMITS * 100:
            attempts += 1
            try:
                r = c.get_root()
                r['own%d' % i]['n'] += 1
                bump = done % 4 == 0
                if bump:
                    r['shared']['n'] += 1
                c.commit()
                journal[i][0] += 1
                journal[i][1] += int(bump)
                done += 1
            except ConflictError:
                conflicts[i] += 1
                c.abort()
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
for t in threads: t.start()
for t in threads: t.join(120)
assert not errors, errors
assert not any(t.is_alive() for t in threads), 'a client never finished'

check = connect(two).get_root()
for i in range(CLIENTS):
    assert check['own%d' % i]['n'] == journal[i][0], (i, check['own%d' % i]['n'], journal[i])
shared = sum(j[1] for j in journal)
assert check['shared']['n'] == shared, (check['shared']['n'], shared)
print('commits', sum(j[0] for j in journal), 'shared', shared, 'conflicts', sum(conflicts))
print('ok')
"#;

#[test]
fn a_shared_counter_through_two_servers_is_exact_to_the_journals() {
    let Some((_cluster, mut one, mut two)) = two_servers("servers_counter") else {
        return;
    };
    let out = support::run_python(
        PYTHON_SHARED_COUNTER,
        &[&one.port.to_string(), &two.port.to_string()],
    );
    assert!(out.trim().ends_with("ok"), "{out}");
    eprintln!("{out}");
    assert!(one.stop());
    assert!(two.stop());
}

/// A Python client reserves oids on a new database and goes away before
/// it makes the root; later clients, of either server, still make it
/// (oid 0 is handed out again while no root exists).
const PYTHON_ROOT_AFTER_A_LOST_RESERVATION: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection

one, two = int(sys.argv[1]), int(sys.argv[2])
first = ClientStorage(host='127.0.0.1', port=one)
first.new_oid(); first.new_oid()
first.s.close()

a = Connection(ClientStorage(host='127.0.0.1', port=two))
a.get_root()['made'] = 1
a.commit()
b = Connection(ClientStorage(host='127.0.0.1', port=one))
assert b.get_root()['made'] == 1
print('ok')
"#;

#[test]
fn the_root_is_made_after_a_client_reserved_oid_0_and_went_away() {
    let Some((_cluster, mut one, mut two)) = two_servers("servers_root") else {
        return;
    };
    let out = support::run_python(
        PYTHON_ROOT_AFTER_A_LOST_RESERVATION,
        &[&one.port.to_string(), &two.port.to_string()],
    );
    assert!(out.trim().ends_with("ok"), "{out}");
    assert!(one.stop());
    assert!(two.stop());
}

#[derive(durus_core::Persistent, serde::Serialize, serde::Deserialize, Default)]
#[persistent(class = "pgservers.Tally")]
struct Tally {
    count: u64,
}

/// Sends `bytes` and reads `n` bytes back.
fn exchange(stream: &mut std::net::TcpStream, bytes: &[u8], n: usize) -> Vec<u8> {
    use std::io::{Read, Write};
    stream.write_all(bytes).expect("send");
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("answer");
    buf
}

/// Server one is paused (SIGSTOP) in the middle of a commit exchange,
/// while its PostgreSQL session holds the commit lock. PostgreSQL ends
/// that idle session after `idle_in_transaction_session_timeout` (1 s
/// here), which frees the lock: a client of server two commits within the
/// lock timeout. Server one, resumed, serves again.
#[test]
fn a_paused_server_holding_the_commit_lock_does_not_stop_the_other() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let url = cluster.new_database("servers_paused");
    let url = format!(
        "{url}?options=-c%20idle_in_transaction_session_timeout%3D1s%20-c%20lock_timeout%3D8s"
    );
    let mut one = ChildServer::start(&["--storage", &url]);
    let mut two = ChildServer::start(&["--storage", &url]);
    {
        let conn = durus_core::Connection::connect(&two.address).expect("connect");
        let root: durus_core::PRef<Tally> = conn.root().expect("root");
        root.write().expect("write").count = 1;
        conn.commit().expect("commit");
    }

    // A raw client of one opens a commit exchange: one now holds the lock.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", one.port)).expect("connect");
    raw.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let mut hello = b"V".to_vec();
    hello.extend_from_slice(&1u32.to_be_bytes());
    exchange(&mut raw, &hello, 4);
    let count = exchange(&mut raw, b"C", 4);
    // The invalidations (the root, committed through two) follow.
    let n = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
    exchange(&mut raw, b"", 8 * n);
    let pid = one.child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");

    let t0 = std::time::Instant::now();
    let committed = (|| -> durus_core::Result<()> {
        let conn = durus_core::Connection::connect(&two.address)?;
        let root: durus_core::PRef<Tally> = conn.root()?;
        root.write()?.count += 1;
        conn.commit()
    })();
    let waited = t0.elapsed();
    signal("-CONT");
    committed.expect("a commit through two while one is paused holding the lock");
    eprintln!("commit through two while one was paused: {waited:?}");
    assert!(
        waited < std::time::Duration::from_secs(8),
        "waited {waited:?}, past the lock timeout"
    );

    // One, resumed: its exchange ends (nothing written), and it serves.
    use std::io::Write;
    let _ = raw.write_all(&0u32.to_be_bytes());
    drop(raw);
    let count = (|| -> durus_core::Result<u64> {
        let conn = durus_core::Connection::connect(&one.address)?;
        let root: durus_core::PRef<Tally> = conn.root()?;
        root.write()?.count += 1;
        conn.commit()?;
        let n = root.read()?.count;
        Ok(n)
    })()
    .expect("server one serves again after its session was ended");
    assert_eq!(count, 3);
    assert!(one.stop());
    assert!(two.stop());
}

#[test]
fn a_libpq_keyword_string_is_refused_and_makes_no_file() {
    let dir = std::env::temp_dir().join(format!("durus-libpq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = std::process::Command::new(support::durus::DURUS)
        .current_dir(&dir)
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .args(["--storage", "host=127.0.0.1 dbname=objects"])
        .output()
        .expect("run durus serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let made: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(stderr.contains("postgresql://"), "{stderr}");
    assert!(made.is_empty(), "files made: {made:?}");
}

#[test]
fn sslmode_require_says_tls_is_not_supported_yet() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let url = format!("{}?sslmode=require", cluster.url("postgres"));
    let out = std::process::Command::new(support::durus::DURUS)
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .args(["--storage", &url])
        .output()
        .expect("run durus serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("TLS"), "{stderr}");
}

/// A durus-rs client waiting for change on server one (the `W` request)
/// wakes when a Python client of server two commits: server one learns
/// of it from PostgreSQL's NOTIFY, not by polling.
#[test]
fn a_client_waiting_on_one_server_wakes_when_a_client_of_another_commits() {
    use durus_core::storage::ClientStorage;
    use durus_core::{Oid, Storage};
    use std::time::{Duration, Instant};
    let Some((_cluster, mut one, mut two)) = two_servers("wait_across_servers") else {
        return;
    };
    let long = Duration::from_secs(20);
    support::run_python(PYTHON_SETUP_ROOT, &[&two.port.to_string()]);
    let mut waiter = ClientStorage::connect(&one.address).expect("connect");
    assert!(waiter.server_waits());
    waiter.sync().expect("sync");
    waiter.load(Oid::ROOT).expect("the root");
    assert!(!waiter
        .wait_for_change(Duration::from_millis(50), None)
        .expect("wait"));
    let mut delays = Vec::new();
    for round in 0..3 {
        let port = two.port.to_string();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            support::run_python(PYTHON_BUMP_ROOT, &[&port]);
            Instant::now()
        });
        let started = Instant::now();
        assert!(
            waiter
                .wait_for_change(long, Some(&[Oid::ROOT]))
                .expect("wait"),
            "round {round}"
        );
        let woke = Instant::now();
        let committed = writer.join().expect("writer");
        assert!(woke.duration_since(started) < long / 2);
        // The Python process exits after its commit: the wake came first,
        // or within moments of it.
        delays.push(woke.saturating_duration_since(committed));
        assert!(waiter.sync().expect("sync").contains(&Oid::ROOT));
    }
    println!("wake on server one after a commit through server two: {delays:?}");
    drop(waiter);
    assert!(one.stop(), "server one exits cleanly");
    assert!(two.stop(), "server two exits cleanly");
}

const PYTHON_SETUP_ROOT: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
c = Connection(ClientStorage(host='127.0.0.1', port=int(sys.argv[1])))
c.get_root()['n'] = 0
c.commit()
"#;

const PYTHON_BUMP_ROOT: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
c = Connection(ClientStorage(host='127.0.0.1', port=int(sys.argv[1])))
c.get_root()['n'] += 1
c.commit()
"#;
