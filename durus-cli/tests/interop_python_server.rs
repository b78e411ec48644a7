//! Unmodified Python Durus 4.3 clients against our `durus serve`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::durus::{ChildServer, DURUS};

const CLIENT_BASICS: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
from durus.error import ConflictError, ReadConflictError, DurusKeyError

port = int(sys.argv[1])
def connect():
    return Connection(ClientStorage(host='127.0.0.1', port=port))

a = connect(); b = connect()
ra = a.get_root()
ra['d'] = PersistentDict(); ra['d']['x'] = 1
ra['e'] = PersistentDict(); ra['e']['y'] = 10
ra['tmp'] = PersistentDict()
a.commit()

# Loads through another client (after a sync).
b.abort()
rb = b.get_root()
assert rb['d']['x'] == 1
assert rb['e']['y'] == 10

# New oids straight from the storage are distinct.
s = a.get_storage()
oids = set(s.new_oid() for _ in range(40))
assert len(oids) == 40

# Bulk load of known records, in order.
d_oid = ra['d']._p_oid; e_oid = ra['e']._p_oid
recs = list(s.bulk_load([d_oid, e_oid, d_oid]))
assert len(recs) == 3 and recs[0] == recs[2] and recs[0][:8] == d_oid

# Write conflict: b's copy of d is stale when it commits.
ra['d']['x'] = 2; a.commit()
rb['d']['x'] = 3
try:
    b.commit()
    raise SystemExit('expected a write conflict')
except ConflictError:
    b.abort()
assert rb['d']['x'] == 2

# Read conflict: b reads d, then loads a ghost that a changed together with d.
ra['g'] = PersistentDict(v=1); a.commit()
b.abort()
g_b = rb['g']
assert rb['d']['x'] == 2
ra['g']['v'] = 2; ra['d']['x'] = 5; a.commit()
try:
    g_b['v']
    raise SystemExit('expected a read conflict')
except ReadConflictError:
    b.abort()
assert g_b['v'] == 2 and rb['d']['x'] == 5

# Sync reports the other client's commits.
ra['d']['x'] = 4; a.commit()
invalid = b.get_storage().sync()
assert d_oid in invalid, invalid
b.abort()

# Pack removes what is unreachable.
tmp_oid = ra['tmp']._p_oid
del ra['tmp']; a.commit()
a.pack()
# The server reports packed-away oids as invalidations, as Durus's does.
assert tmp_oid in s.sync()
try:
    s.load(tmp_oid)
    raise SystemExit('expected the packed object to be gone')
except DurusKeyError:
    pass
c = connect()
assert c.get_root()['d']['x'] == 4
c.get_storage().close()
a.get_storage().close(); b.get_storage().close()
print('ok')
"#;

const WORKER: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.error import ConflictError
port, idx, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = Connection(ClientStorage(host='127.0.0.1', port=port))
root = c.get_root()
mine = root['c%d' % idx]
for _ in range(rounds):
    mine['n'] += 1
    c.commit()
done = 0; attempts = 0
while done < rounds and attempts < 10000:
    attempts += 1
    try:
        root['hot']['n'] += 1
        c.commit()
        done += 1
    except ConflictError:
        c.abort()
assert done == rounds, (done, attempts)
c.get_storage().close()
print('ok')
"#;

const SETUP: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
port, clients = int(sys.argv[1]), int(sys.argv[2])
c = Connection(ClientStorage(host='127.0.0.1', port=port))
root = c.get_root()
for i in range(clients):
    root['c%d' % i] = PersistentDict(n=0)
root['hot'] = PersistentDict(n=0)
c.commit()
"#;

const CHECK: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
port, clients, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = Connection(ClientStorage(host='127.0.0.1', port=port))
root = c.get_root()
assert root['hot']['n'] == clients * rounds, root['hot']['n']
for i in range(clients):
    assert root['c%d' % i]['n'] == rounds
print('ok')
"#;

#[test]
fn python_client_commits_loads_conflicts_and_packs() {
    let mut server = ChildServer::start(&[]);
    let out = support::run_python(CLIENT_BASICS, &[&server.port.to_string()]);
    assert_eq!(out.trim(), "ok");
    assert!(server.stop(), "server exits cleanly on Q");
}

#[test]
fn concurrent_python_clients_lose_nothing() {
    let mut server = ChildServer::start(&[]);
    let port = server.port.to_string();
    let (clients, rounds) = (4, 40);
    support::run_python(SETUP, &[&port, &clients.to_string()]);
    let mut workers: Vec<_> = (0..clients)
        .map(|i| {
            Command::new(support::durus_python())
                .arg("-c")
                .arg(WORKER)
                .args([port.as_str(), &i.to_string(), &rounds.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start worker")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for w in &mut workers {
        loop {
            if let Some(status) = w.try_wait().expect("wait") {
                assert!(status.success(), "worker failed");
                break;
            }
            assert!(Instant::now() < deadline, "workers took too long");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = support::run_python(CHECK, &[&port, &clients.to_string(), &rounds.to_string()]);
    assert_eq!(out.trim(), "ok");
    assert!(server.stop());
}

#[test]
fn python_durus_stop_command_stops_our_server() {
    let mut server = ChildServer::start(&[]);
    let script = "import sys\nfrom durus.__main__ import stop_durus\nprint(stop_durus(('127.0.0.1', int(sys.argv[1]))))";
    let out = support::run_python(script, &[&server.port.to_string()]);
    assert_eq!(out.trim(), "True");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stop());
}

/// Python Durus's own server (`durus -s`) on `file`, stopped on drop by
/// its `Q` command, or killed by pid if it does not exit in time.
struct PythonServer {
    child: std::process::Child,
    port: u16,
}

impl PythonServer {
    fn start(file: &std::path::Path) -> PythonServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(support::durus_python())
            .args(["-m", "durus", "-s", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--file")
            .arg(file)
            .args(["--logginglevel", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python durus -s");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "python durus -s did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        PythonServer { child, port }
    }

    fn stop(mut self) {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"Q");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WRITE_AND_CHECK: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
port, key, expect = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(',') if sys.argv[3] else []
c = Connection(ClientStorage(host='127.0.0.1', port=port))
root = c.get_root()
for k in expect:
    assert root[k]['who'] == k, (k, dict(root[k]))
    assert root[k]['n'] == len(k), k
root[key] = PersistentDict(who=key, n=len(key))
c.commit()
print('ok', sorted(root.keys()))
"#;

#[test]
fn files_move_between_python_durus_server_and_ours() {
    let dir = support::Scratch::new("server-files");
    let file = dir.path("shared.durus");
    let run = |port: u16, key: &str, expect: &str| {
        support::run_python(WRITE_AND_CHECK, &[&port.to_string(), key, expect])
    };

    let python = PythonServer::start(&file);
    run(python.port, "python1", "");
    python.stop();

    let file_arg = file.to_str().expect("utf-8 path");
    let mut ours = ChildServer::start(&["--file", file_arg]);
    let out = run(ours.port, "ours", "python1");
    assert!(out.contains("'ours', 'python1'"), "{out}");
    assert!(ours.stop(), "our server exits cleanly");

    let python = PythonServer::start(&file);
    let out = run(python.port, "python2", "python1,ours");
    python.stop();
    assert!(out.contains("'ours', 'python1', 'python2'"), "{out}");

    let verified = Command::new(DURUS)
        .args(["verify", "--file", file_arg])
        .output()
        .expect("run durus verify");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
