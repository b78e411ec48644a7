//! Per-key counters under 8 threads, on a hub and through a server: every
//! increment counted, no conflict seen by the application; and a bounded
//! per-key stock that 8 concurrent orders never take below its minimum.

mod support;

use durus_core::{
    per_key, BTree, Connection, Error, Hub, MemoryStorage, PRef, Persistent, PersistentDict,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Barrier};
use std::thread;
use support::server::InProcess;

type R<T> = durus_core::Result<T>;

const THREADS: usize = 8;
const KEYS: usize = 16;
const INCREMENTS: usize = 200;
const ITEMS: usize = 4;
const STOCK: i64 = 10;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "perkey.Root")]
struct Root {
    views: BTree<String, u64, per_key::Sum>,
    dict: PRef<PersistentDict<String, u64, per_key::Sum>>,
    stock: BTree<String, i64, per_key::Sum<0>>,
}

fn key(n: usize) -> String {
    format!("page-{n:02}")
}

/// Every key of both maps at 0, every item's stock at `STOCK`.
fn setup(conn: &Connection) -> R<()> {
    let root: PRef<Root> = conn.root()?;
    let r = root.read()?;
    for n in 0..KEYS {
        r.views.insert(key(n), 0)?;
        r.dict.write()?.insert(key(n), 0);
    }
    for n in 0..ITEMS {
        r.stock.insert(key(n), STOCK)?;
    }
    drop(r);
    conn.commit()
}

/// Loads the maps, then ends the transaction: a load after the start could
/// meet another thread's commit of an object already read (a read conflict,
/// as in Durus), which is not what these tests measure.
fn warm(conn: &Connection) -> R<()> {
    let root: PRef<Root> = conn.root()?;
    let r = root.read()?;
    r.views.get(&key(0))?;
    r.dict.read()?;
    r.stock.get(&key(0))?;
    drop(r);
    conn.abort()
}

/// `THREADS` threads, each on its own warm connection, from a common start.
fn on_threads<T: Send + 'static>(
    connect: impl Fn() -> Connection + Send + Sync + 'static,
    work: impl Fn(usize, &Connection) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let start = Arc::new(Barrier::new(THREADS));
    let shared = Arc::new((connect, work));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (start, shared) = (start.clone(), shared.clone());
            thread::spawn(move || {
                let conn = (shared.0)();
                warm(&conn).expect("warm");
                start.wait();
                (shared.1)(t, &conn)
            })
        })
        .collect();
    workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect()
}

/// Each thread increments keys in turn in the tree and the dict, one
/// commit per increment; returns (increments per key, conflicts seen).
fn count(t: usize, conn: &Connection) -> (Vec<u64>, u64) {
    let root: PRef<Root> = conn.root().expect("root");
    let (views, dict) = {
        let r = root.read().expect("read");
        (r.views.clone(), r.dict.clone())
    };
    let mut done = vec![0u64; KEYS];
    let mut conflicts = 0;
    for i in 0..INCREMENTS {
        let k = key((t + i) % KEYS);
        let attempt = views
            .get(&k)
            .and_then(|v| views.insert(k.clone(), v.unwrap_or(0) + 1))
            .and_then(|_| {
                *dict.write()?.entry(k.clone()).or_default() += 1;
                conn.commit()
            });
        match attempt {
            Ok(()) => done[(t + i) % KEYS] += 1,
            Err(_) => {
                conflicts += 1;
                conn.abort().expect("abort");
            }
        }
    }
    (done, conflicts)
}

/// The totals per key match the acknowledged increments, in both maps.
fn check_counts(conn: &Connection, results: &[(Vec<u64>, u64)]) -> R<()> {
    let conflicts: u64 = results.iter().map(|r| r.1).sum();
    assert_eq!(conflicts, 0, "no conflict reaches the application");
    let root: PRef<Root> = conn.root()?;
    let r = root.read()?;
    for n in 0..KEYS {
        let expect: u64 = results.iter().map(|r| r.0[n]).sum();
        assert_eq!(r.views.get(&key(n))?, Some(expect), "tree, key {n}");
        assert_eq!(r.dict.read()?.get(&key(n)), Some(&expect), "dict, key {n}");
    }
    let total: u64 = (0..KEYS)
        .map(|n| r.views.get(&key(n)).map(Option::unwrap_or_default))
        .sum::<R<u64>>()?;
    assert_eq!(total, (THREADS * INCREMENTS) as u64);
    r.views.verify()?;
    Ok(())
}

#[test]
fn per_key_counters_eight_threads_exact_totals() -> R<()> {
    let hub = Hub::new(MemoryStorage::new());
    setup(&Connection::new(hub.storage()))?;
    let h = hub.clone();
    let results = on_threads(move || Connection::new(h.storage()), count);
    check_counts(&Connection::new(hub.storage()), &results)
}

#[test]
fn per_key_counters_eight_clients_through_the_server_exact_totals() -> R<()> {
    let mut server = InProcess::start();
    let addr = server.addr();
    setup(&Connection::connect(&addr)?)?;
    let results = on_threads(move || Connection::connect(&addr).expect("connect"), count);
    check_counts(&Connection::new(server.hub.storage()), &results)?;
    server.stop()
}

/// Each thread orders one unit at a time, of items in turn, until every
/// item it tries is sold out; returns the units it sold per item.
fn order(t: usize, conn: &Connection) -> Vec<i64> {
    let root: PRef<Root> = conn.root().expect("root");
    let stock = root.read().expect("read").stock.clone();
    let mut sold = vec![0i64; ITEMS];
    let mut out = [false; ITEMS];
    for i in 0..4 * STOCK as usize {
        let n = (t + i) % ITEMS;
        let got = conn.transaction(1000, |_| {
            let left = stock.get(&key(n))?.unwrap_or(0);
            assert!(left >= 0, "a transaction saw stock {left} for item {n}");
            if left == 0 {
                return Ok(false);
            }
            stock.insert(key(n), left - 1)?;
            Ok(true)
        });
        match got {
            Ok(true) => sold[n] += 1,
            Ok(false) => out[n] = true,
            Err(e) => panic!("an order failed: {e}"),
        }
        if out.iter().all(|o| *o) {
            break;
        }
    }
    sold
}

#[test]
fn bounded_per_key_stock_never_below_its_minimum_with_eight_orders_at_once() -> R<()> {
    let hub = Hub::new(MemoryStorage::new());
    setup(&Connection::new(hub.storage()))?;
    let h = hub.clone();
    let results = on_threads(move || Connection::new(h.storage()), order);
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root()?;
    let stock = root.read()?.stock.clone();
    for n in 0..ITEMS {
        let sold: i64 = results.iter().map(|r| r[n]).sum();
        assert_eq!(stock.get(&key(n))?, Some(0), "item {n} sold out");
        assert_eq!(sold, STOCK, "item {n}: every unit sold once");
    }
    Ok(())
}

/// What the bounded stock test relies on: a merge below the minimum is a
/// conflict the application sees only through its retry.
#[test]
fn a_merge_below_the_minimum_is_a_conflict() -> R<()> {
    let hub = Hub::new(MemoryStorage::new());
    setup(&Connection::new(hub.storage()))?;
    let (a, b) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    let sa = a.root::<Root>()?.read()?.stock.clone();
    let sb = b.root::<Root>()?.read()?.stock.clone();
    sa.insert(key(0), 1)?;
    sb.insert(key(0), 2)?;
    a.commit()?;
    assert!(matches!(b.commit(), Err(Error::Conflict(_))));
    Ok(())
}
