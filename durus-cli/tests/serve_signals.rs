//! `durus serve` stops gracefully on SIGTERM and SIGINT, as `durus stop`
//! does: sessions end, the file is closed (its lock released, every
//! acknowledged commit in it) and the process exits 0.

mod support;

use durus_core::{Connection, FileStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::{Duration, Instant};
use support::durus::ChildServer;

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Tally {
    n: u64,
}

fn stops_on(signal: &str) {
    let dir = support::Scratch::new(&format!("serve-{signal}"));
    let path = dir.path("signals.durus");
    let p = path.to_str().expect("utf-8");
    let mut server = ChildServer::start(&[p, "--fsync", "always"]);
    let conn = Connection::connect(&server.address).expect("connect");
    let root: PRef<Tally> = conn.root().expect("root");
    root.write().expect("write").n = 7;
    conn.commit().expect("commit");
    // A client stays connected while the signal comes.
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "durus serve ignored SIG{signal}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "SIG{signal}: {exit:?}");
    drop(conn);
    // The lock is free and the commit is there.
    let conn = Connection::new(FileStorage::open(&path).expect("reopen"));
    assert_eq!(
        conn.root::<Tally>().expect("root").read().expect("read").n,
        7
    );
}

#[test]
fn serve_stops_gracefully_on_sigterm() {
    stops_on("TERM");
}

#[test]
fn serve_stops_gracefully_on_sigint() {
    stops_on("INT");
}
