//! A job queue whose workers sleep until a job arrives: each worker runs a
//! transaction that takes the oldest job, and when there is none, waits
//! for change of the queue ([`Database::wait_for_change`]) instead of
//! polling. A producer enqueues jobs one at a time and measures how long
//! each waited to be picked up.
//!
//! `cargo run --example jobs -- [--server HOST:PORT] [--workers N] [--jobs N]`
//! (without `--server`, a storage server in this process, on loopback).

use durus_core::server::{Address, Server, ServerConfig};
use durus_core::{Database, Error, Hub, MemoryStorage, Oid, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// The root: jobs not taken yet, oldest first.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "jobs.Queue")]
pub struct Queue {
    /// Job numbers.
    pub pending: VecDeque<u64>,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// Each job's number and the worker that took it.
    pub taken: Vec<(u64, usize)>,
    /// From the start of each job's commit to the commit of its claim, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    /// The median pickup latency.
    pub fn median(&self) -> Duration {
        self.latencies
            .get(self.latencies.len() / 2)
            .copied()
            .unwrap_or_default()
    }
}

/// Takes the oldest job, if any. A transaction that finds none writes
/// nothing, so that it wakes no other worker.
fn take(db: &Database) -> Result<Option<u64>, Error> {
    db.transaction(|conn| {
        let queue: PRef<Queue> = conn.root()?;
        if queue.read()?.pending.is_empty() {
            return Ok(None);
        }
        let job = queue.write()?.pending.pop_front();
        Ok(job)
    })
}

/// One worker: takes jobs, and sleeps until the queue changes when there
/// is none, until `stop`.
fn work(db: &Database, id: usize, stop: &AtomicBool, done: &mpsc::Sender<(u64, usize, Instant)>) {
    while !stop.load(Ordering::SeqCst) {
        match take(db) {
            Ok(Some(job)) => {
                let _ = done.send((job, id, Instant::now()));
            }
            Ok(None) => {
                // Bounded, so that `stop` is seen.
                if let Err(e) = db.wait_for_change(Duration::from_millis(200), Some(&[Oid::ROOT])) {
                    eprintln!("worker {id}: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
            Err(e) => {
                eprintln!("worker {id}: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Runs `jobs` jobs, one at a time, through `workers` workers on the
/// server at `address`.
pub fn run(address: &str, workers: usize, jobs: u64) -> Result<Report, Error> {
    let db = Database::connect(address)?;
    db.transaction(|conn| conn.root::<Queue>().map(|_| ()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..workers)
        .map(|id| {
            let (db, stop, tx) = (db.clone(), stop.clone(), tx.clone());
            thread::spawn(move || work(&db, id, &stop, &tx))
        })
        .collect();
    // Let the workers fall asleep.
    thread::sleep(Duration::from_millis(300));
    let mut report = Report {
        taken: Vec::new(),
        latencies: Vec::new(),
    };
    let mut failed = None;
    for job in 0..jobs {
        let committing = Instant::now();
        let queued = db.transaction(|conn| {
            conn.root::<Queue>()?.write()?.pending.push_back(job);
            Ok::<_, Error>(())
        });
        if let Err(e) = queued {
            failed = Some(e);
            break;
        }
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((taken, worker, at)) => {
                report.taken.push((taken, worker));
                report
                    .latencies
                    .push(at.saturating_duration_since(committing));
            }
            Err(_) => {
                failed = Some(Error::Storage(durus_core::error::StorageError::Other(
                    format!("job {job} was not picked up within 30 s"),
                )));
                break;
            }
        }
        // Back to sleep before the next one.
        thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    if let Some(e) = failed {
        return Err(e);
    }
    report.latencies.sort_unstable();
    Ok(report)
}

/// A storage server in this process, on a free loopback port, over memory;
/// stopped when the returned guard drops.
pub struct LocalServer {
    /// Where it listens.
    pub address: String,
    handle: durus_core::server::ServerHandle,
    thread: Option<thread::JoinHandle<durus_core::Result<()>>>,
}

impl LocalServer {
    /// Starts it.
    pub fn start() -> Result<LocalServer, Error> {
        let config = ServerConfig {
            address: Address::tcp("127.0.0.1", 0),
            ..ServerConfig::default()
        };
        let server = Server::bind(Hub::new(MemoryStorage::new()), config)?;
        let address = server.local_address()?.to_string();
        let handle = server.handle();
        let thread = Some(thread::spawn(move || server.serve()));
        Ok(LocalServer {
            address,
            handle,
            thread,
        })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The command line: `[--server HOST:PORT] [--workers N] [--jobs N]`.
pub fn main_with_args(args: &[String]) -> i32 {
    let mut server = None;
    let (mut workers, mut jobs) = (4usize, 1000u64);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next();
        let parsed = match (arg.as_str(), value) {
            ("--server", Some(v)) => {
                server = Some(v.clone());
                true
            }
            ("--workers", Some(v)) => v.parse().map(|n| workers = n).is_ok(),
            ("--jobs", Some(v)) => v.parse().map(|n| jobs = n).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("usage: jobs [--server HOST:PORT] [--workers N] [--jobs N]");
            return 2;
        }
    }
    let local = match &server {
        Some(_) => None,
        None => match LocalServer::start() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("cannot start a server: {e}");
                return 1;
            }
        },
    };
    let address = server.unwrap_or_else(|| {
        local
            .as_ref()
            .map(|s| s.address.clone())
            .unwrap_or_default()
    });
    match run(&address, workers.max(1), jobs) {
        Ok(report) => {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let last = report.latencies.last().copied().unwrap_or_default();
            println!(
                "{} jobs, {} workers: pickup median {:.2} ms, max {:.2} ms",
                report.taken.len(),
                workers,
                ms(report.median()),
                ms(last)
            );
            0
        }
        Err(e) => {
            eprintln!("jobs: {e}");
            1
        }
    }
}
