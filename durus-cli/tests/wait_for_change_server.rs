//! Waiting for change through a `durus serve` child process (the `W`
//! extension), a Python Durus client beside it (it sees nothing new), our
//! client against Python Durus's own server (detected; plain mode, which
//! polls), a server stopping under a waiting client, and the job queue:
//! workers that sleep until a job arrives, with the pickup latency over
//! 1 000 jobs, compared with workers that poll every 50 ms.

mod support;

use durus_core::storage::ClientStorage;
use durus_core::{Connection, Error, Oid, PRef, Persistent, Result, Storage};
use serde::{Deserialize, Serialize};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use support::durus::ChildServer;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_client_waiting_on_the_server_wakes_when_a_python_client_commits() {
    let mut server = ChildServer::start(&[]);
    let port = server.port.to_string();
    let mut waiter = ClientStorage::connect(&server.address).expect("connect");
    assert!(
        waiter.server_waits(),
        "our server offers the wait extension"
    );
    assert!(!waiter
        .wait_for_change(Duration::from_millis(20), None)
        .expect("wait"));
    let started = Instant::now();
    let python = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        support::run_python(PYTHON_COMMITS, &[&port])
    });
    assert!(waiter.wait_for_change(LONG, None).expect("wait"));
    assert!(started.elapsed() < LONG / 2);
    // The wait took nothing: the sync reports the root.
    assert!(waiter.sync().expect("sync").contains(&Oid::ROOT));
    assert_eq!(python.join().expect("python").trim(), "ok");
    drop(waiter);
    assert!(server.stop(), "server exits cleanly on Q");
}

/// A Python Durus client: commits, syncs, loads and commits again, as
/// always (its bytes are Durus 4.3's).
const PYTHON_COMMITS: &str = r#"
import sys
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent_dict import PersistentDict
port = int(sys.argv[1])
a = Connection(ClientStorage(host='127.0.0.1', port=port))
b = Connection(ClientStorage(host='127.0.0.1', port=port))
ra = a.get_root()
ra['d'] = PersistentDict(x=1)
a.commit()
b.abort()
assert b.get_root()['d']['x'] == 1
ra['d']['x'] = 2
a.commit()
b.abort()
assert b.get_root()['d']['x'] == 2
ra['e'] = PersistentDict(y=1)
a.commit()
assert ra._p_oid in b.get_storage().sync()
a.get_storage().close(); b.get_storage().close()
print('ok')
"#;

#[test]
fn a_server_stopping_ends_a_clients_wait() {
    let mut server = ChildServer::start(&[]);
    let address = server.address.clone();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut storage = ClientStorage::connect(&address).expect("connect");
        tx.send(()).expect("ready");
        let started = Instant::now();
        let out = storage.wait_for_change(LONG, None);
        (out, started.elapsed())
    });
    rx.recv_timeout(LONG).expect("waiter connected");
    thread::sleep(Duration::from_millis(100));
    assert!(server.stop(), "server exits cleanly on Q");
    let (out, waited) = waiter.join().expect("waiter");
    assert!(out.is_err(), "the wait fails: {out:?}");
    assert!(
        waited < LONG / 2,
        "the wait ended with the server: {waited:?}"
    );
}

/// Python Durus's own server (`durus -s`), stopped by its `Q`, or killed
/// by pid if it does not exit in time.
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
        let deadline = Instant::now() + LONG;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "python durus -s did not listen");
            thread::sleep(Duration::from_millis(50));
        }
        PythonServer { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"Q");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn against_python_durus_server_a_wait_polls_and_loses_nothing() {
    let dir = support::Scratch::new("wait-python-server");
    let python = PythonServer::start(&dir.path("db.durus"));
    let address = format!("127.0.0.1:{}", python.port);
    let mut writer = ClientStorage::connect(&address).expect("connect");
    assert!(
        !writer.server_waits(),
        "Python's server has no wait extension"
    );
    let root = Oid::ROOT;
    let x = writer.new_oid().expect("oid 0");
    assert_eq!(x, root);
    support::commit(&mut writer, vec![(root, support::rec(root, b"one", &[]))]);

    let mut waiter = ClientStorage::connect(&address).expect("connect");
    assert!(!waiter.server_waits());
    assert_eq!(
        waiter.load(root).expect("load"),
        support::rec(root, b"one", &[])
    );
    assert!(!waiter
        .wait_for_change(Duration::from_millis(50), None)
        .expect("wait"));
    let committer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        support::commit(&mut writer, vec![(root, support::rec(root, b"two", &[]))]);
        writer
    });
    let started = Instant::now();
    assert!(waiter.wait_for_change(LONG, Some(&[root])).expect("wait"));
    assert!(started.elapsed() < LONG / 2);
    drop(committer.join().expect("committer"));
    // What polling took from the server is still this client's: a load
    // of it is refused until the sync, which reports it.
    assert!(matches!(waiter.load(root), Err(Error::Conflict(_))));
    assert_eq!(waiter.sync().expect("sync"), vec![root]);
    assert_eq!(
        waiter.load(root).expect("load"),
        support::rec(root, b"two", &[])
    );
    drop(waiter);
    drop(python);
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "waittest.Queue")]
struct Queue {
    pending: Vec<u64>,
}

/// How a worker sleeps when the queue is empty.
#[derive(Clone, Copy)]
enum Idle {
    Wait,
    Poll(Duration),
}

/// A worker: takes jobs from the root queue (a transaction that finds
/// none writes nothing, so that it wakes no one), reports each job it
/// took with when its claim committed, and sleeps when there is none.
fn worker(address: &str, idle: Idle, stop: &AtomicBool, taken: &mpsc::Sender<(u64, Instant)>) {
    let conn = Connection::connect(address).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let took = (|| -> Result<Option<u64>> {
            conn.abort()?;
            let queue: PRef<Queue> = conn.root()?;
            if queue.read()?.pending.is_empty() {
                return Ok(None);
            }
            let job = queue.write()?.pending.remove(0);
            conn.commit()?;
            Ok(Some(job))
        })();
        match took {
            Ok(Some(job)) => {
                let _ = taken.send((job, Instant::now()));
            }
            Ok(None) => match idle {
                Idle::Wait => {
                    conn.wait_for_change_of(&[Oid::ROOT], Duration::from_millis(200))
                        .expect("wait");
                }
                Idle::Poll(every) => thread::sleep(every),
            },
            // Another worker took it first.
            Err(e) if e.is_conflict() => {}
            Err(e) => panic!("worker: {e}"),
        }
    }
}

/// Runs `jobs` jobs one at a time through `workers` workers; the pickup
/// latencies (from the start of the job's commit to the commit of its
/// claim), sorted.
fn run_queue(address: &str, workers: usize, jobs: u64, idle: Idle) -> Vec<Duration> {
    let producer = Connection::connect(address).expect("connect");
    let queue: PRef<Queue> = producer.root().expect("root");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (address, stop, tx) = (address.to_string(), stop.clone(), tx.clone());
            thread::spawn(move || worker(&address, idle, &stop, &tx))
        })
        .collect();
    // The workers are asleep before the first job.
    thread::sleep(Duration::from_millis(300));
    let mut latencies = Vec::with_capacity(jobs as usize);
    for job in 0..jobs {
        producer.abort().expect("abort");
        queue.write().expect("write").pending.push(job);
        let committing = Instant::now();
        producer.commit().expect("enqueue");
        let (taken, at) = rx.recv_timeout(LONG).expect("a worker took the job");
        assert_eq!(taken, job);
        latencies.push(at.saturating_duration_since(committing));
        // Back to sleep before the next one.
        thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("worker");
    }
    latencies.sort_unstable();
    latencies
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let at = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or_default()
}

#[test]
fn job_queue_workers_that_wait_pick_up_jobs_within_milliseconds() {
    let mut server = ChildServer::start(&[]);
    let waiting = run_queue(&server.address, 4, 1000, Idle::Wait);
    let polling = run_queue(
        &server.address,
        4,
        100,
        Idle::Poll(Duration::from_millis(50)),
    );
    let (median, p90, p99) = (
        percentile(&waiting, 50),
        percentile(&waiting, 90),
        percentile(&waiting, 99),
    );
    println!(
        "job pickup through durus serve, 4 workers, 1000 jobs: waiting for change \
         median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms; polling every 50 ms (100 jobs): \
         median {:.2} ms",
        ms(median),
        ms(p90),
        ms(p99),
        ms(percentile(&polling, 50))
    );
    // The issue's bar (10 ms); measured: about 1 ms in a release build,
    // 3 ms in a debug build on a loaded two-core machine (printed above).
    assert!(
        median < Duration::from_millis(10),
        "median {:.2} ms",
        ms(median)
    );
    assert!(median < percentile(&polling, 50));
    assert!(server.stop(), "server exits cleanly on Q");
}
