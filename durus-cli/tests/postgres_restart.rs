//! `durus serve` on PostgreSQL through a restart of PostgreSQL and an
//! outage: service resumes without restarting the server, nothing
//! acknowledged is lost, and a server told to give up after a limit exits
//! non-zero. This binary has a cluster of its own (it restarts it).

mod support;

use durus_core::{Connection, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::durus::ChildServer;
use support::pg;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "pgrestart.Tally")]
struct Tally {
    count: u64,
}

/// What a client saw: commits acknowledged, commits whose outcome is
/// unknown, and when each acknowledgement came.
#[derive(Default)]
struct Journal {
    acked: AtomicU64,
    unknown: AtomicU64,
    last_ack: std::sync::Mutex<Option<Instant>>,
}

/// Increments the tally through `address` until `stop`, reconnecting
/// after any failure (bounded by `stop`).
fn client(address: String, journal: Arc<Journal>, stop: Arc<AtomicBool>) {
    let mut conn: Option<Connection> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.take() {
            Some(c) => c,
            None => match Connection::connect(&address) {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let step = (|| -> durus_core::Result<()> {
            let root: PRef<Tally> = c.root()?;
            root.write()?.count += 1;
            c.commit()
        })();
        match step {
            Ok(()) => {
                journal.acked.fetch_add(1, Ordering::SeqCst);
                *journal.last_ack.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                conn = Some(c);
            }
            Err(e) if e.is_conflict() => {
                let _ = c.abort();
                conn = Some(c);
            }
            Err(durus_core::Error::OutcomeUnknown(_)) => {
                journal.unknown.fetch_add(1, Ordering::SeqCst);
            }
            // The server dropped the session (its storage failed): a new
            // connection. Was the commit sent? The server answers only
            // after a commit is durable, so a dropped session before the
            // answer is an unknown outcome when it came from commit().
            Err(e) => {
                if matches!(e, durus_core::Error::Storage(_) | durus_core::Error::Io(_)) {
                    journal.unknown.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn tally(address: &str) -> u64 {
    let conn = Connection::connect(address).expect("connect");
    let root: PRef<Tally> = conn.root().expect("root");
    let n = root.read().expect("read").count;
    n
}

#[test]
fn service_resumes_after_a_postgresql_restart_and_an_outage_past_the_limit_exits() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let url = cluster.new_database("restart");
    let one = ChildServer::start(&["--storage", &url, "--storage-outage-limit", "3"]);
    let two = ChildServer::start(&["--storage", &url, "--storage-outage-limit", "3"]);
    let journal = Arc::new(Journal::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [&one.address, &two.address, &one.address, &two.address]
        .into_iter()
        .map(|address| {
            let (address, journal, stop) = (address.clone(), journal.clone(), stop.clone());
            std::thread::spawn(move || client(address, journal, stop))
        })
        .collect();

    // Load, then a restart (a fast shutdown ends every session).
    let wait_for_acks = |n: u64| {
        let t0 = Instant::now();
        while journal.acked.load(Ordering::SeqCst) < n && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for_acks(50);
    let before = journal.acked.load(Ordering::SeqCst);
    let t_restart = Instant::now();
    cluster.restart();
    let back = Instant::now();
    eprintln!("PostgreSQL restarted in {:?}", back - t_restart);
    wait_for_acks(before + 50);
    let first_after = (|| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Some(t) = *journal.last_ack.lock().unwrap_or_else(|p| p.into_inner()) {
                if t > back {
                    return Some(t - back);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    })();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let first_after = first_after.expect("no commit acknowledged after the restart");
    eprintln!("first acknowledged commit {first_after:?} after PostgreSQL was back");
    assert!(first_after < Duration::from_secs(5), "{first_after:?}");

    let acked = journal.acked.load(Ordering::SeqCst);
    let unknown = journal.unknown.load(Ordering::SeqCst);
    let stored = tally(&one.address);
    eprintln!("acked {acked}, unknown {unknown}, stored {stored}");
    assert!(
        stored >= acked && stored <= acked + unknown,
        "stored {stored}, acknowledged {acked}, unknown {unknown}"
    );

    // PostgreSQL gone for good: both servers exit non-zero past the limit.
    cluster.stop();
    let t0 = Instant::now();
    for mut server in [one, two] {
        let status = loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                break Some(status);
            }
            if t0.elapsed() > Duration::from_secs(20) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let status = status.expect("the server did not exit after the outage limit");
        assert!(!status.success(), "exit status {status}");
    }
    eprintln!("servers exited {:?} after PostgreSQL stopped", t0.elapsed());
}
