//! Raw bytes against a running server: every kind of bad input closes that
//! client's session only; a fresh client then works and the data is intact.
//! A client that stalls mid-commit is timed out without blocking the others.

mod support;

use durus_core::internals::record;
use durus_core::{Connection, Oid, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use support::server::InProcess;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "bad_input.Root")]
struct Root {
    values: Vec<i64>,
}

const TIMEOUT: Duration = Duration::from_millis(800);

/// A server with a short client timeout and some committed data.
fn server_with_data() -> InProcess {
    let server = InProcess::with_config(|c| c.client_timeout = TIMEOUT);
    let conn = Connection::connect(&server.addr()).expect("connect");
    let root: PRef<Root> = conn.root().expect("root");
    root.write().expect("write").values = vec![1, 2, 3];
    conn.commit().expect("commit");
    server
}

/// A fresh client sees the data and can still commit.
fn assert_intact(server: &InProcess) {
    let conn = Connection::connect(&server.addr()).expect("fresh client connects");
    let root: PRef<Root> = conn.root().expect("root");
    assert_eq!(root.read().expect("read").values[..3], [1, 2, 3]);
    root.write().expect("write").values.push(4);
    conn.commit().expect("fresh client commits");
    root.write().expect("write").values.pop();
    conn.commit().expect("fresh client commits");
}

fn raw(server: &InProcess) -> TcpStream {
    let s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (&s).write_all(b"V\x00\x00\x00\x01").expect("version");
    let mut v = [0u8; 4];
    (&s).read_exact(&mut v).expect("version reply");
    assert_eq!(v, [0, 0, 0, 1]);
    s
}

/// True once the server has closed the connection (EOF or reset).
fn closed_by_server(mut s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}

fn send_and_expect_close(bytes: &[u8]) {
    let server = server_with_data();
    let s = raw(&server);
    let _ = (&s).write_all(bytes);
    assert!(closed_by_server(&s), "session closed after {bytes:?}");
    assert_intact(&server);
}

#[test]
fn unknown_command_byte_closes_the_session() {
    send_and_expect_close(b"Z");
    send_and_expect_close(b"\x00\xff\xfegarbage");
}

#[test]
fn wrong_protocol_version_closes_the_session() {
    let server = server_with_data();
    let s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (&s).write_all(b"V\x00\x00\x00\x09").expect("write");
    let mut v = [0u8; 4];
    (&s).read_exact(&mut v).expect("server says its version");
    assert_eq!(v, [0, 0, 0, 1]);
    assert!(closed_by_server(&s));
    assert_intact(&server);
}

#[test]
fn truncated_frame_then_close_ends_the_session() {
    let server = server_with_data();
    let s = raw(&server);
    (&s).write_all(b"L\x00\x00\x00").expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert!(closed_by_server(&s));
    assert_intact(&server);
}

#[test]
fn stalled_frame_times_out_without_blocking_others() {
    let server = server_with_data();
    let s = raw(&server);
    (&s).write_all(b"B\x00\x00\x00\x05\x00\x00").expect("write");
    let start = Instant::now();
    // Meanwhile another client is served at once.
    assert_intact(&server);
    assert!(start.elapsed() < TIMEOUT, "others were not held up");
    assert!(closed_by_server(&s), "the staller is dropped");
    assert!(start.elapsed() < TIMEOUT * 4);
}

#[test]
fn over_limit_lengths_close_the_session_before_the_bytes_arrive() {
    // A bulk load of 4 billion oids.
    send_and_expect_close(b"B\xff\xff\xff\xff");
    // A bulk load just over the limit.
    let over = (durus_core::internals::protocol::MAX_BULK_OIDS as u32 + 1).to_be_bytes();
    send_and_expect_close(&[&b"B"[..], &over].concat());
    // A transaction of 2 GiB, and a resolution request for too many oids.
    for answer in [[0x7f, 0xff, 0xff, 0xff], (-(1i32 << 20)).to_be_bytes()] {
        let server = server_with_data();
        let s = raw(&server);
        (&s).write_all(b"C").expect("write");
        let mut n = [0u8; 4];
        (&s).read_exact(&mut n).expect("invalidations");
        assert_eq!(n, [0, 0, 0, 0]);
        (&s).write_all(&answer).expect("write");
        assert!(closed_by_server(&s));
        assert_intact(&server);
    }
}

/// Sends `C`, reads the invalidation list, then sends a transaction.
fn commit_raw(s: &TcpStream, records: &[(u64, Vec<u8>)]) {
    (&*s).write_all(b"C").expect("write");
    let mut n = [0u8; 4];
    (&*s).read_exact(&mut n).expect("invalidations");
    let count = u32::from_be_bytes(n) as usize;
    let mut skip = vec![0u8; count * 8];
    (&*s).read_exact(&mut skip).expect("oids");
    let mut tdata = Vec::new();
    for (oid, rec) in records {
        tdata.extend_from_slice(&(8 + rec.len() as u32).to_be_bytes());
        tdata.extend_from_slice(&oid.to_be_bytes());
        tdata.extend_from_slice(rec);
    }
    let mut out = (tdata.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&tdata);
    (&*s).write_all(&out).expect("transaction");
}

#[test]
fn malformed_transactions_close_the_session() {
    // A record whose own oid differs from the one it is filed under.
    let server = server_with_data();
    let s = raw(&server);
    let rec = record::pack(Oid(7), b"x", &[]).expect("record");
    commit_raw(&s, &[(8, rec)]);
    assert!(closed_by_server(&s));
    assert_intact(&server);
    // A record too short to be one.
    let s = raw(&server);
    commit_raw(&s, &[(8, vec![1, 2, 3])]);
    assert!(closed_by_server(&s));
    assert_intact(&server);
}

#[test]
fn commit_naming_another_clients_reserved_oid_is_refused() {
    let server = server_with_data();
    let owner = raw(&server);
    (&owner).write_all(b"M\x01").expect("write");
    let mut oid = [0u8; 8];
    (&owner).read_exact(&mut oid).expect("oid");
    let oid = u64::from_be_bytes(oid);

    let thief = raw(&server);
    let rec = record::pack(Oid(oid), b"stolen", &[]).expect("record");
    commit_raw(&thief, &[(oid, rec)]);
    assert!(closed_by_server(&thief));
    assert_intact(&server);

    // The owner can still use its oid; nothing was stored under it before.
    let mut load = b"L".to_vec();
    load.extend_from_slice(&oid.to_be_bytes());
    (&owner).write_all(&load).expect("write");
    let mut status = [0u8; 1];
    (&owner).read_exact(&mut status).expect("status");
    assert_eq!(&status, b"K");
    let rec = record::pack(Oid(oid), b"mine", &[]).expect("record");
    commit_raw(&owner, &[(oid, rec)]);
    (&owner).read_exact(&mut status).expect("status");
    assert_eq!(&status, b"O");
}

#[test]
fn client_stalled_mid_commit_is_dropped_and_others_commit() {
    let server = server_with_data();
    let staller = raw(&server);
    (&staller).write_all(b"C").expect("write");
    let mut n = [0u8; 4];
    (&staller).read_exact(&mut n).expect("invalidations");
    // The staller holds the commit now; another client's commit waits at
    // most the client timeout.
    let start = Instant::now();
    assert_intact(&server);
    let waited = start.elapsed();
    assert!(
        waited < TIMEOUT + Duration::from_secs(2),
        "waited {waited:?}"
    );
    assert!(closed_by_server(&staller), "the staller was dropped");
}

#[test]
fn goodbye_byte_and_abandoned_commit_are_quiet() {
    let server = server_with_data();
    let s = raw(&server);
    (&s).write_all(b"C").expect("write");
    let mut n = [0u8; 4];
    (&s).read_exact(&mut n).expect("invalidations");
    (&s).write_all(&[0, 0, 0, 0]).expect("give up");
    (&s).write_all(b"S").expect("sync");
    (&s).read_exact(&mut n).expect("sync reply");
    (&s).write_all(b".").expect("close");
    assert!(closed_by_server(&s));
    assert_intact(&server);
}
