//! Waiting for change over a hub (threads in one process): a wait ends when
//! another session commits, at once when a change is already there (and
//! does not take it), on a pack, only for the oids of interest when asked,
//! and after its timeout otherwise; `Database` and the job-queue shape.

mod support;

use durus_core::{
    Connection, Database, Hub, MemoryStorage, Oid, PRef, Persistent, PersistentList, Result,
};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "waittest.Root")]
struct Root {
    queue: Option<PRef<PersistentList<u64>>>,
    other: Option<PRef<PersistentList<u64>>>,
}

const LONG: Duration = Duration::from_secs(10);

/// A hub whose root holds two lists; their oids.
fn setup() -> (Hub, Oid, Oid) {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root().expect("root");
    let (queue, other) = (
        PRef::new(PersistentList::new()),
        PRef::new(PersistentList::new()),
    );
    {
        let mut r = root.write().expect("write");
        r.queue = Some(queue.clone());
        r.other = Some(other.clone());
    }
    conn.commit().expect("commit");
    let oids = (queue.oid().expect("oid"), other.oid().expect("oid"));
    (hub, oids.0, oids.1)
}

fn push(conn: &Connection, which: Oid, value: u64) {
    conn.abort().expect("abort");
    let list: PRef<PersistentList<u64>> = conn.get(which).expect("get");
    list.write().expect("write").push(value);
    conn.commit().expect("commit");
}

fn items(conn: &Connection, which: Oid) -> Vec<u64> {
    let list: PRef<PersistentList<u64>> = conn.get(which).expect("get");
    let out = list.read().expect("read").iter().copied().collect();
    out
}

#[test]
fn a_wait_ends_when_another_session_commits() {
    let (hub, queue, _) = setup();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let hub = hub.clone();
        thread::spawn(move || -> Result<(bool, Duration, Vec<u64>)> {
            let conn = Connection::new(hub.storage());
            conn.root::<Root>()?;
            tx.send(()).expect("ready");
            let started = Instant::now();
            let changed = conn.wait_for_change(LONG)?;
            let waited = started.elapsed();
            conn.abort()?;
            Ok((changed, waited, items(&conn, queue)))
        })
    };
    rx.recv_timeout(LONG).expect("waiter ready");
    thread::sleep(Duration::from_millis(100));
    push(&Connection::new(hub.storage()), queue, 7);
    let (changed, waited, seen) = waiter.join().expect("waiter").expect("wait");
    assert!(changed);
    assert!(waited < LONG / 2, "woke after {waited:?}");
    assert_eq!(seen, vec![7], "the next transaction sees the change");
}

#[test]
fn a_wait_times_out_when_nothing_changes() -> Result<()> {
    let (hub, _, _) = setup();
    let conn = Connection::new(hub.storage());
    conn.root::<Root>()?;
    let started = Instant::now();
    assert!(!conn.wait_for_change(Duration::from_millis(80))?);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(80), "{waited:?}");
    assert!(waited < LONG, "{waited:?}");
    Ok(())
}

#[test]
fn a_change_already_there_ends_the_wait_at_once_and_stays_for_the_sync() -> Result<()> {
    let (hub, queue, _) = setup();
    let worker = Connection::new(hub.storage());
    assert!(items(&worker, queue).is_empty());
    push(&Connection::new(hub.storage()), queue, 1);
    let started = Instant::now();
    assert!(worker.wait_for_change(LONG)?);
    assert!(worker.wait_for_change(LONG)?, "the wait took nothing");
    assert!(started.elapsed() < LONG / 2);
    // The worker's cached list is stale until the next transaction.
    assert!(items(&worker, queue).is_empty());
    worker.abort()?;
    assert_eq!(items(&worker, queue), vec![1]);
    assert!(!worker.wait_for_change(Duration::from_millis(10))?);
    Ok(())
}

#[test]
fn a_wait_of_interest_ignores_other_objects() -> Result<()> {
    let (hub, queue, other) = setup();
    let worker = Connection::new(hub.storage());
    worker.root::<Root>()?;
    let producer = Connection::new(hub.storage());
    push(&producer, other, 1);
    assert!(!worker.wait_for_change_of(&[queue], Duration::from_millis(50))?);
    assert!(worker.wait_for_change(Duration::from_millis(50))?);
    let session = {
        let hub = hub.clone();
        thread::spawn(move || {
            let conn = Connection::new(hub.storage());
            thread::sleep(Duration::from_millis(50));
            push(&conn, queue, 2);
        })
    };
    assert!(worker.wait_for_change_of(&[queue], LONG)?);
    session.join().expect("producer");
    worker.abort()?;
    assert_eq!(items(&worker, queue), vec![2]);
    Ok(())
}

#[test]
fn a_pack_that_removes_records_ends_a_wait() -> Result<()> {
    let (hub, _, other) = setup();
    let worker = Connection::new(hub.storage());
    worker.root::<Root>()?;
    let admin = Connection::new(hub.storage());
    let root: PRef<Root> = admin.root()?;
    root.write()?.other = None;
    admin.commit()?;
    worker.abort()?;
    assert!(!worker.wait_for_change(Duration::from_millis(10))?);
    admin.pack()?;
    assert!(worker.wait_for_change_of(&[other], Duration::from_millis(10))?);
    Ok(())
}

#[test]
fn a_wait_on_a_storage_of_ones_own_sleeps_for_its_timeout() -> Result<()> {
    let conn = Connection::new(MemoryStorage::new());
    let started = Instant::now();
    assert!(!conn.wait_for_change(Duration::from_millis(30))?);
    assert!(started.elapsed() >= Duration::from_millis(30));
    Ok(())
}

#[test]
fn database_workers_sleep_until_a_job_arrives() {
    let (hub, queue, _) = setup();
    let db = Database::from_hub(hub);
    let jobs = 50u64;
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let db = db.clone();
            thread::spawn(move || -> Result<Vec<u64>> {
                let mut done = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    let job = db.transaction(|conn| {
                        let list: PRef<PersistentList<u64>> = conn.get(queue)?;
                        // Only a worker that takes a job writes (and so
                        // wakes the others).
                        if list.read()?.is_empty() {
                            return Ok::<_, durus_core::Error>(None);
                        }
                        let job = list.write()?.remove(0);
                        Ok(job)
                    })?;
                    match job {
                        Some(u64::MAX) => {
                            // Leave the stop mark for the others.
                            db.transaction(|conn| {
                                let list: PRef<PersistentList<u64>> = conn.get(queue)?;
                                list.write()?.push(u64::MAX);
                                Ok::<_, durus_core::Error>(())
                            })?;
                            return Ok(done);
                        }
                        Some(job) => done.push(job),
                        None => {
                            db.wait_for_change(Duration::from_secs(5), Some(&[queue]))?;
                        }
                    }
                }
                Ok(done)
            })
        })
        .collect();
    for job in 0..jobs {
        db.transaction(|conn| {
            let list: PRef<PersistentList<u64>> = conn.get(queue)?;
            list.write()?.push(job);
            Ok::<_, durus_core::Error>(())
        })
        .expect("enqueue");
        thread::sleep(Duration::from_millis(2));
    }
    db.transaction(|conn| {
        let list: PRef<PersistentList<u64>> = conn.get(queue)?;
        list.write()?.push(u64::MAX);
        Ok::<_, durus_core::Error>(())
    })
    .expect("stop mark");
    let mut all: Vec<u64> = Vec::new();
    for w in workers {
        all.extend(w.join().expect("worker").expect("worker's transactions"));
    }
    all.sort_unstable();
    assert_eq!(all, (0..jobs).collect::<Vec<_>>(), "every job once");
}

/// A wait "forever" (`Duration::MAX`) is a wait, not an overflow: with a
/// change already there it returns at once.
#[test]
fn a_wait_forever_with_a_change_there_returns_at_once() -> Result<()> {
    let (hub, queue, _) = setup();
    let waiter = Connection::new(hub.storage());
    let _: PRef<Root> = waiter.root()?;
    let writer = Connection::new(hub.storage());
    let list: PRef<PersistentList<u64>> = writer.get(queue)?;
    list.write()?.push(1);
    writer.commit()?;
    assert!(waiter.wait_for_change(Duration::MAX)?);
    Ok(())
}
