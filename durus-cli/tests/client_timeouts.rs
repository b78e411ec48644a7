//! Clients never wait forever on a silent server: connect and read
//! timeouts on `ClientStorage`, `Connection::connect` and
//! `Database::connect`, against a listener that accepts and never answers,
//! a scripted server that goes silent once a commit is sent, and a real
//! `durus serve` process paused with SIGSTOP.

mod support;

use durus_core::storage::{ClientOptions, NoConflicts};
use durus_core::{
    ClientStorage, Connection, Database, DatabaseOptions, Error, Oid, PRef, Persistent, Storage,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};
use support::durus::ChildServer;

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Counter {
    hits: u64,
}

/// Short enough for a test, long enough for a loaded machine's server.
const SHORT: Duration = Duration::from_secs(1);

fn short() -> ClientOptions {
    ClientOptions {
        read_timeout: Some(SHORT),
        ..ClientOptions::default()
    }
}

fn is_timeout(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("did not answer within") && text.contains("127.0.0.1:")
}

/// A listener that accepts connections, holds them for `hold`, and never
/// writes a byte.
fn silent_listener(hold: Duration) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    listener.set_nonblocking(true).expect("nonblocking");
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + hold;
        let mut held = Vec::new();
        while Instant::now() < deadline {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (address, thread)
}

#[test]
fn a_listener_that_never_answers_times_out_every_client() {
    let (address, thread) = silent_listener(Duration::from_secs(6));
    let started = Instant::now();
    let e = ClientStorage::connect_with(&address, short())
        .map(drop)
        .expect_err("storage");
    assert!(is_timeout(&e), "{e}");
    let e = Connection::connect_with(&address, short())
        .map(drop)
        .expect_err("connection");
    assert!(is_timeout(&e), "{e}");
    let options = DatabaseOptions {
        client: short(),
        ..DatabaseOptions::default()
    };
    let e = Database::connect_with(&address, options)
        .map(drop)
        .expect_err("database");
    assert!(is_timeout(&e), "{e}");
    // Three timeouts of one second each, not a wait without end.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    thread.join().expect("listener");
}

#[test]
fn a_server_silent_after_the_commit_was_sent_gives_outcome_unknown() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    // Answers the version, the wait probe and the commit's invalidations,
    // then nothing.
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut version = [0u8; 5];
        s.read_exact(&mut version).expect("version");
        s.write_all(&1u32.to_be_bytes()).expect("reply");
        let mut probe = [0u8; 9];
        s.read_exact(&mut probe).expect("probe");
        assert_eq!(probe[0], b'W');
        s.write_all(b"O").expect("nothing changed");
        let mut commit = [0u8; 1];
        s.read_exact(&mut commit).expect("commit");
        assert_eq!(&commit, b"C");
        s.write_all(&0u32.to_be_bytes()).expect("no invalidations");
        let mut sink = [0u8; 4096];
        for _ in 0..1000 {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let mut storage = ClientStorage::connect_with(&address, short()).expect("connect");
    storage.begin();
    storage.store(Oid(0), vec![0; 12]).expect("store");
    let e = storage
        .end(&mut NoConflicts)
        .map(drop)
        .expect_err("a silent server");
    assert!(matches!(e, Error::OutcomeUnknown(_)), "{e:?}");
    assert!(is_timeout(&e), "{e}");
    assert!(storage.is_closed());
    drop(storage);
    server.join().expect("server");
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn a_paused_server_fails_the_transaction_and_the_connection_is_replaced() {
    let mut server = ChildServer::start(&["--fsync", "never"]);
    let pid = server.child.id();
    let db = Database::connect_with(
        &server.address,
        DatabaseOptions {
            client: short(),
            ..DatabaseOptions::default()
        },
    )
    .expect("connect");
    let bump = |db: &Database| {
        db.transaction(|c| {
            let root: PRef<Counter> = c.root()?;
            let hits = root.read()?.hits + 1;
            root.write()?.hits = hits;
            Ok::<_, Error>(hits)
        })
    };
    assert_eq!(bump(&db).expect("first"), 1);

    signal(pid, "STOP");
    let started = Instant::now();
    let e = bump(&db).expect_err("a paused server");
    let waited = started.elapsed();
    signal(pid, "CONT");
    assert!(is_timeout(&e), "{e}");
    // One timeout, not one per attempt (ten by default).
    assert!(waited < Duration::from_secs(4), "{waited:?}");

    // Once the server runs again, the next transaction uses a new connection.
    let hits = bump(&db).expect("after SIGCONT");
    assert_eq!(hits, 2);

    // A plain connection: the same error, and it reports itself closed.
    let conn = Connection::connect_with(&server.address, short()).expect("connect");
    let root: PRef<Counter> = conn.root().expect("root");
    root.write().expect("write").hits += 1;
    signal(pid, "STOP");
    let e = conn.commit().expect_err("a paused server");
    signal(pid, "CONT");
    assert!(is_timeout(&e), "{e}");
    assert!(conn.is_closed());
    drop(conn);
    assert!(server.stop());
}
