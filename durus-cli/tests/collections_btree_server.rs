//! Concurrent inserts of different keys into one small BTree from four
//! client processes through a server: no conflict while the leaf has room
//! (the inserts merge), every key present at the end.

mod support;

use durus_core::{BTree, Connection, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::durus::ChildServer;

const CHILD_ENV: &str = "DURUS_BTREE_SERVER_CHILD";
const CLIENTS: u64 = 4;
/// Inserts per client that fit in the root leaf (3 + 4 x 7 = 31 keys).
const FITTING: u64 = 7;
/// Further inserts per client, which split nodes (conflicts retried).
const SPLITTING: u64 = 30;
/// Time given to the fitting inserts before splitting ones start.
const PHASE_MS: u64 = 3_000;
const INITIAL: [u64; 3] = [1_000_000, 2_000_000, 3_000_000];

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "btree_server.Root")]
struct Root {
    tree: BTree<u64, String>,
}

fn key(client: u64, j: u64) -> u64 {
    j * CLIENTS + client
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The child: waits for the common start, inserts its keys, reports.
#[test]
fn btree_server_child_role() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let address = parts.next().expect("address").to_string();
    let client: u64 = parts.next().and_then(|c| c.parse().ok()).expect("client");
    let start_at: u64 = parts.next().and_then(|c| c.parse().ok()).expect("start");
    let conn = Connection::connect(&address).expect("connect");
    let root: PRef<Root> = conn.root().expect("root");
    let tree = root.read().expect("read").tree.clone();
    tree.len().expect("load the tree");
    conn.abort().expect("end the setup transaction");
    let wait = start_at.saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait.min(10_000)));

    let mut conflicts = 0;
    for j in 0..FITTING {
        tree.insert(key(client, j), format!("client {client}"))
            .expect("insert");
        if conn.commit().is_err() {
            conflicts += 1;
            conn.abort().expect("abort");
        }
    }
    // Splits start once every client is done with the fitting inserts.
    let wait = (start_at + PHASE_MS).saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait.min(10_000)));
    for j in FITTING..FITTING + SPLITTING {
        conn.transaction(50, |_| {
            tree.insert(key(client, j), format!("client {client}"))?;
            Ok(())
        })
        .expect("insert with retry");
    }
    println!("CHILD {client} {conflicts} {}", conn.merge_count());
}

#[test]
fn four_processes_insert_different_keys_into_one_tree() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let mut server = ChildServer::start(&["--fsync", "never"]);
    {
        let conn = Connection::connect(&server.address).expect("connect");
        let root: PRef<Root> = conn.root().expect("root");
        let tree = root.read().expect("read").tree.clone();
        for k in INITIAL {
            tree.insert(k, "initial".into()).expect("insert");
        }
        conn.commit().expect("commit");
    }
    let exe = std::env::current_exe().expect("test binary");
    let start_at = now_ms() + 2_000;
    let children: Vec<_> = (0..CLIENTS)
        .map(|client| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "btree_server_child_role",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{},{client},{start_at}", server.address))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a client")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reports = Vec::new();
    for mut child in children {
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a client did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find_map(|l| l.find("CHILD ").map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("no report from a client: {text}"));
        reports.push(line);
    }
    let mut merges = 0;
    for line in &reports {
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().expect("number"))
            .collect();
        assert_eq!(
            fields[1], 0,
            "inserts into a leaf with room conflicted: {line}"
        );
        merges += fields[2];
    }

    let conn = Connection::connect(&server.address).expect("connect");
    let root: PRef<Root> = conn.root().expect("root");
    let tree = root.read().expect("read").tree.clone();
    let expected = INITIAL.len() as u64 + CLIENTS * (FITTING + SPLITTING);
    assert_eq!(tree.len().expect("len"), expected);
    for client in 0..CLIENTS {
        for j in 0..FITTING + SPLITTING {
            assert_eq!(
                tree.get(&key(client, j)).expect("get"),
                Some(format!("client {client}")),
                "key of client {client} #{j} is missing"
            );
        }
    }
    let counted = tree.iter().count() as u64;
    assert_eq!(counted, expected);
    drop(conn);
    assert!(server.stop());
    println!("{merges} objects merged with another client's commit");
}
