//! A committing process killed at random moments loses no acknowledged commit.
//!
//! The test re-runs its own binary as a child (selected by an environment
//! variable) that commits in a loop and prints each commit once it is
//! durable. The parent kills it by pid, reopens the file and checks that
//! every printed commit is there. Five rounds on one file, each bounded.

mod support;

use durus_core::internals::record;
use durus_core::storage::file::FileOptions;
use durus_core::storage::NoConflicts;
use durus_core::{FileStorage, Oid, Storage};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Scratch;

const CHILD_ENV: &str = "DURUS_FILE_KILL_CHILD";
const ROUNDS: usize = 5;

fn value(round: u64, n: u64) -> Vec<u8> {
    format!("round {round} commit {n}").into_bytes()
}

/// The child: commits until killed (or for at most 5 seconds).
#[test]
fn kill_child_role() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("DURUS_FILE_KILL_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let mut fs = FileStorage::open(&path).expect("child open");
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        let oid = fs.new_oid().expect("oid");
        let data = value(round, n);
        fs.begin();
        fs.store(oid, record::pack(oid, &data, &[]).expect("pack"))
            .expect("store");
        // A second, bigger record makes writes long enough to be cut.
        let big = vec![n as u8; 4_000];
        let other = fs.new_oid().expect("oid");
        fs.store(other, record::pack(other, &big, &[]).expect("pack"))
            .expect("store");
        fs.end(&mut NoConflicts)
            .expect("end")
            .wait()
            .expect("durable");
        writeln!(out, "ack {} {round} {n}", oid.0).expect("stdout");
        out.flush().expect("flush");
        n += 1;
    }
}

/// A small xorshift, seeded from the clock: kill times differ run to run.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn killed_writer_loses_no_acknowledged_commit() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = Scratch::new("kill");
    let path = dir.path("a.durus");
    let exe = std::env::current_exe().expect("test binary");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut repaired_rounds = 0;
    for round in 0..ROUNDS as u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child_role",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("DURUS_FILE_KILL_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = line.strip_prefix("ack ").and_then(|rest| {
                    let mut parts = rest.split(' ').map(|p| p.parse::<u64>().ok());
                    Some((parts.next()??, parts.next()??, parts.next()??))
                });
                if let Some(ack) = parsed {
                    if tx.send(ack).is_err() {
                        break;
                    }
                }
            }
        });
        // Once the child commits, kill it at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 300));
        child.kill().expect("kill child");
        child.wait().expect("reap child");
        reader.join().expect("reader");
        let first = first.expect("the child acknowledged a commit");
        for (oid, r, n) in std::iter::once(first).chain(rx.try_iter()) {
            acked.insert(oid, value(r, n));
        }

        let mut fs = match FileStorage::open(&path) {
            Ok(fs) => fs,
            Err(durus_core::Error::Storage(durus_core::error::StorageError::TornTail {
                ..
            })) => {
                repaired_rounds += 1;
                FileStorage::open_with(&path, FileOptions::new().repair(true)).expect("repair")
            }
            Err(e) => panic!("round {round}: reopen failed: {e}"),
        };
        for (oid, data) in &acked {
            let rec = fs.load(Oid(*oid)).expect("acknowledged commit is there");
            assert_eq!(
                record::unpack(&rec).expect("framing").data,
                &data[..],
                "oid {oid}"
            );
        }
    }
    eprintln!(
        "{} acknowledged commits survived {ROUNDS} kills ({repaired_rounds} torn tails repaired)",
        acked.len()
    );
}
