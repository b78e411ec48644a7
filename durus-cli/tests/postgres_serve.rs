//! Two `durus serve --storage postgresql://...` processes on one database:
//! what a client commits through one is seen through the other, and a
//! conflict between clients of the two is detected (each server learns the
//! other's commits from PostgreSQL). Also Python Durus 4.3 clients.

mod support;

use durus_core::{Connection, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::process::Command;
use support::durus::{ChildServer, DURUS};
use support::pg;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "pgserve.Shelf")]
struct Shelf {
    titles: Vec<String>,
    count: u64,
}

/// Two servers on a new database of the shared cluster; `None` when the
/// PostgreSQL tests are skipped.
fn two_servers(name: &str) -> Option<(std::sync::Arc<pg::Cluster>, ChildServer, ChildServer)> {
    let cluster = pg::cluster()?;
    let url = cluster.new_database(name);
    let one = ChildServer::start(&["--storage", &url]);
    let two = ChildServer::start(&["--storage", &url]);
    Some((cluster, one, two))
}

#[test]
fn a_commit_through_one_server_is_seen_through_the_other() {
    let Some((_cluster, mut one, mut two)) = two_servers("serve_seen") else {
        return;
    };
    let a = Connection::connect(&one.address).expect("connect to one");
    let b = Connection::connect(&two.address).expect("connect to two");
    let root_a: PRef<Shelf> = a.root().expect("root through one");
    root_a.write().expect("write").titles.push("Dune".into());
    a.commit().expect("commit through one");

    let root_b: PRef<Shelf> = b.root().expect("root through two");
    b.sync().expect("sync");
    assert_eq!(
        root_b.read().expect("read").titles,
        vec!["Dune".to_string()]
    );

    // And back: a commit through two reaches a client of one at its sync.
    root_b.write().expect("write").titles.push("Emma".into());
    b.commit().expect("commit through two");
    a.sync().expect("sync");
    assert_eq!(
        root_a.read().expect("read").titles,
        vec!["Dune".to_string(), "Emma".to_string()]
    );
    drop((a, b));
    assert!(one.stop(), "server one did not stop cleanly");
    assert!(two.stop(), "server two did not stop cleanly");
}

#[test]
fn a_conflict_between_clients_of_two_servers_is_detected() {
    let Some((_cluster, mut one, mut two)) = two_servers("serve_conflict") else {
        return;
    };
    let a = Connection::connect(&one.address).expect("connect to one");
    let b = Connection::connect(&two.address).expect("connect to two");
    let root_a: PRef<Shelf> = a.root().expect("root");
    root_a.write().expect("write").count = 1;
    a.commit().expect("first commit");

    b.sync().expect("sync");
    let root_b: PRef<Shelf> = b.root().expect("root");
    assert_eq!(root_b.read().expect("read").count, 1);

    // Both change the root; the first to commit wins.
    root_a.write().expect("write").count = 2;
    root_b.write().expect("write").count = 3;
    a.commit().expect("commit through one");
    let e = b.commit().expect_err("a write conflict through two");
    assert!(e.is_conflict(), "not a conflict: {e}");
    b.abort().expect("abort");
    assert_eq!(root_b.read().expect("read").count, 2);

    // After the abort, b commits on top of a's change.
    root_b.write().expect("write").count = 4;
    b.commit().expect("commit after abort");
    a.sync().expect("sync");
    assert_eq!(root_a.read().expect("read").count, 4);
    drop((a, b));
    assert!(one.stop());
    assert!(two.stop());
}

const PYTHON_TWO_SERVERS: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
from durus.error import ConflictError

one, two = int(sys.argv[1]), int(sys.argv[2])
a = Connection(ClientStorage(host='127.0.0.1', port=one))
b = Connection(ClientStorage(host='127.0.0.1', port=two))
ra = a.get_root()
ra['d'] = PersistentDict(); ra['d']['x'] = 1
a.commit()

b.abort()
rb = b.get_root()
assert rb['d']['x'] == 1, rb['d']['x']

ra['d']['x'] = 2; a.commit()
rb['d']['x'] = 3
try:
    b.commit()
    raise SystemExit('expected a write conflict')
except ConflictError:
    b.abort()
assert rb['d']['x'] == 2
rb['d']['x'] = 5; b.commit()
a.abort()
assert ra['d']['x'] == 5
print('ok')
"#;

#[test]
fn python_durus_clients_on_two_servers() {
    let Some((_cluster, mut one, mut two)) = two_servers("serve_python") else {
        return;
    };
    let out = support::run_python(
        PYTHON_TWO_SERVERS,
        &[&one.port.to_string(), &two.port.to_string()],
    );
    assert_eq!(out.trim(), "ok");
    assert!(one.stop());
    assert!(two.stop());
}

#[test]
fn a_bad_url_is_a_clear_error() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    // A database that does not exist on the cluster.
    let url = cluster.url("no_such_database");
    let out = Command::new(DURUS)
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--storage",
            &url,
        ])
        .output()
        .expect("run durus serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgresql") && stderr.contains("no_such_database"),
        "{stderr}"
    );
}
