//! Many clients on one server: 1 000 connections opened and used at once,
//! the connection cap, and a graceful stop with clients connected.

mod support;

use durus_core::{Connection, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::server::InProcess;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "many.Root")]
struct Root {
    n: u64,
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_connections_are_served() {
    let start = Instant::now();
    let server = InProcess::start();
    let conn = Connection::connect(&server.addr()).expect("connect");
    let root: PRef<Root> = conn.root().expect("root");
    let mut clients = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let s = TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        clients.push(s);
    }
    // Every client asks for a new oid (pipelined: all requests, then all replies).
    for s in &clients {
        (&*s).write_all(b"V\x00\x00\x00\x01N").expect("write");
    }
    let mut oids = HashSet::new();
    for s in &clients {
        let mut reply = [0u8; 12];
        (&*s).read_exact(&mut reply).expect("reply");
        oids.insert(reply[4..].to_vec());
    }
    assert_eq!(oids.len(), 1000, "every client got its own oid");
    assert_eq!(server.handle().connections(), 1001);

    // A real connection commits while all of them are open.
    root.write().expect("write").n = 1000;
    conn.commit().expect("commit");
    drop(conn);

    for s in &clients {
        (&*s).write_all(b".").expect("close");
    }
    drop(clients);
    wait_until("sessions to end", Duration::from_secs(20), || {
        server.handle().connections() == 0
    });
    assert!(start.elapsed() < Duration::from_secs(40));
}

#[test]
fn connections_over_the_cap_are_closed() {
    let server = InProcess::with_config(|c| c.max_connections = 3);
    let kept: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr()).expect("connect"))
        .collect();
    wait_until("three sessions", Duration::from_secs(10), || {
        server.handle().connections() == 3
    });
    let extra = TcpStream::connect(server.addr()).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = (&extra).write_all(b"V\x00\x00\x00\x01");
    let mut buf = [0u8; 4];
    assert!(matches!((&extra).read(&mut buf), Ok(0) | Err(_)), "refused");
    drop(kept);
    wait_until("room again", Duration::from_secs(10), || {
        server.handle().connections() == 0
    });
    let conn = Connection::connect(&server.addr()).expect("connect after");
    let _: PRef<Root> = conn.root().expect("root");
}

#[test]
fn stop_with_clients_connected_ends_sessions_and_serve() {
    let mut server = InProcess::start();
    let conn = Connection::connect(&server.addr()).expect("connect");
    let root: PRef<Root> = conn.root().expect("root");
    root.write().expect("write").n = 5;
    conn.commit().expect("commit");
    let idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(server.addr()).expect("connect"))
        .collect();
    let start = Instant::now();
    server.stop().expect("serve returns and closes the storage");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.handle().connections(), 0);
    drop(idle);
    assert!(
        Connection::connect(&server.addr()).is_err(),
        "no longer listening"
    );
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "many.Holder")]
struct Holder {
    kept: Option<PRef<Root>>,
}

#[test]
fn background_pack_runs_after_gcbytes_committed() {
    use durus_core::Storage;
    let server = InProcess::with_config(|c| c.gcbytes = 1);
    let conn = Connection::connect(&server.addr()).expect("connect");
    let root: PRef<Holder> = conn.root().expect("root");
    let garbage = PRef::new(Root { n: 9 });
    root.write().expect("write").kept = Some(garbage.clone());
    conn.commit().expect("commit");
    let oid = garbage.oid().expect("oid");
    root.write().expect("write").kept = None;
    conn.commit().expect("commit");
    let mut probe = server.hub.storage();
    wait_until("the background pack", Duration::from_secs(10), || {
        let _ = probe.sync();
        matches!(probe.load(oid), Err(durus_core::Error::NotFound(_)))
    });
}
