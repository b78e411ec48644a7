//! Several connections in several threads on one storage (in-process
//! sharing through the hub): conflicts, retry and invalidation, as in Durus.

use durus_core::{ConflictKind, Connection, Error, Hub, MemoryStorage, PRef, Persistent, Status};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Barrier};
use std::thread;

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    x: Option<PRef<Counter>>,
    y: Option<PRef<Counter>>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Counter {
    value: i64,
}

fn setup() -> Hub {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root().expect("root");
    {
        let mut r = root.write().expect("write");
        r.x = Some(PRef::new(Counter::default()));
        r.y = Some(PRef::new(Counter::default()));
    }
    conn.commit().expect("commit");
    hub
}

fn counters(conn: &Connection) -> (PRef<Counter>, PRef<Counter>) {
    let root: PRef<Root> = conn.root().expect("root");
    let r = root.read().expect("read");
    (r.x.clone().expect("x"), r.y.clone().expect("y"))
}

/// Runs `a` and `b` in two threads, each with its own connection; they meet
/// at barriers to order their steps.
fn two_threads<A, B>(hub: &Hub, a: A, b: B)
where
    A: FnOnce(Connection, &Barrier) + Send + 'static,
    B: FnOnce(Connection, &Barrier) + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ha, hb) = (hub.clone(), hub.clone());
    let (ba, bb) = (barrier.clone(), barrier);
    let ta = thread::spawn(move || a(Connection::new(ha.storage()), &ba));
    let tb = thread::spawn(move || b(Connection::new(hb.storage()), &bb));
    ta.join().expect("thread a");
    tb.join().expect("thread b");
}

fn final_values(hub: &Hub) -> (i64, i64) {
    let conn = Connection::new(hub.storage());
    let (x, y) = counters(&conn);
    let values = (x.read().expect("x").value, y.read().expect("y").value);
    values
}

#[test]
fn write_write_conflict_then_retry_succeeds() {
    let hub = setup();
    two_threads(
        &hub,
        |conn, step| {
            let (x, _) = counters(&conn);
            x.write().expect("write").value += 1;
            step.wait(); // both have changed x
            conn.commit().expect("first committer wins");
            step.wait();
        },
        |conn, step| {
            let (x, _) = counters(&conn);
            x.write().expect("write").value += 10;
            step.wait();
            step.wait(); // a has committed
            match conn.commit() {
                Err(Error::Conflict(c)) => {
                    assert_eq!(c.kind, ConflictKind::Write);
                    assert_eq!(c.oids, vec![x.oid().expect("oid")]);
                }
                other => panic!("expected a write conflict, got {other:?}"),
            }
            assert!(matches!(conn.commit(), Err(Error::NeedsAbort)));
            conn.abort().expect("abort");
            assert_eq!(x.status(), Status::Ghost);
            x.write().expect("write").value += 10;
            conn.commit().expect("retry");
        },
    );
    assert_eq!(final_values(&hub), (11, 0));
}

#[test]
fn a_read_in_this_transaction_conflicts_too() {
    let hub = setup();
    two_threads(
        &hub,
        |conn, step| {
            let (x, _) = counters(&conn);
            step.wait(); // b has read x
            x.write().expect("write").value = 5;
            conn.commit().expect("commit");
            step.wait();
        },
        |conn, step| {
            let (x, y) = counters(&conn);
            let seen = x.read().expect("read").value; // reads x
            step.wait();
            step.wait(); // a changed x meanwhile
            y.write().expect("write").value = seen + 1; // writes only y
            match conn.commit() {
                Err(Error::Conflict(c)) => assert_eq!(c.oids, vec![x.oid().expect("oid")]),
                other => panic!("expected a conflict on x, got {other:?}"),
            }
            conn.transaction(3, |_| {
                let seen = x.read()?.value;
                y.write()?.value = seen + 1;
                Ok(())
            })
            .expect("retry");
        },
    );
    assert_eq!(final_values(&hub), (5, 6));
}

#[test]
fn loading_an_invalidated_object_after_a_read_is_a_read_conflict() {
    let hub = setup();
    two_threads(
        &hub,
        |conn, step| {
            let (x, y) = counters(&conn);
            step.wait();
            x.write().expect("write").value = 1;
            y.write().expect("write").value = 1;
            conn.commit().expect("commit");
            step.wait();
        },
        |conn, step| {
            let (x, y) = counters(&conn);
            conn.abort().expect("new transaction"); // y stays a ghost? make sure
            assert_eq!(y.status(), Status::Ghost);
            x.read().expect("read x");
            step.wait();
            step.wait(); // a changed x and y
            match y.read() {
                Err(Error::Conflict(c)) => {
                    assert_eq!(c.kind, ConflictKind::Read);
                    assert_eq!(c.oids, vec![y.oid().expect("oid")]);
                }
                other => panic!("expected a read conflict, got {:?}", other.map(|_| ())),
            }
            conn.abort().expect("abort");
            assert_eq!(y.read().expect("reload").value, 1);
            assert_eq!(x.read().expect("reload").value, 1);
        },
    );
}

#[test]
fn invalidated_objects_reload_at_the_next_transaction() {
    let hub = setup();
    two_threads(
        &hub,
        |conn, step| {
            let (x, _) = counters(&conn);
            step.wait();
            x.write().expect("write").value = 42;
            conn.commit().expect("commit");
            step.wait();
        },
        |conn, step| {
            let (x, _) = counters(&conn);
            assert_eq!(x.read().expect("read").value, 0);
            conn.commit().expect("end the read transaction");
            step.wait();
            step.wait();
            // Still the old state until this connection syncs...
            assert_eq!(x.status(), Status::Saved);
            conn.commit().expect("a commit with no changes syncs");
            assert_eq!(x.status(), Status::Ghost);
            assert_eq!(x.read().expect("reload").value, 42);
        },
    );
}

#[test]
fn many_threads_with_retry_lose_no_update() {
    let hub = setup();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let hub = hub.clone();
            thread::spawn(move || {
                let conn = Connection::new(hub.storage());
                let (x, _) = counters(&conn);
                for _ in 0..50 {
                    conn.transaction(1000, |_| {
                        x.write()?.value += 1;
                        Ok(())
                    })
                    .expect("transaction");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(final_values(&hub).0, 200);
}
