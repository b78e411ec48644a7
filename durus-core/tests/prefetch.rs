//! Prefetching: a storage that asks for it gets a loaded record's
//! references in one bulk load, and invalidations drop prefetched records.

use durus_core::hub::SharedStorage;
use durus_core::storage::{CommitHandler, Durability, Storage};
use durus_core::{Connection, Hub, MemoryStorage, Oid, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    items: Vec<PRef<Item>>,
}

#[derive(Persistent, Serialize, Deserialize)]
struct Item {
    n: i64,
}

/// A shared storage that asks for prefetching and counts round trips.
struct Remote {
    inner: SharedStorage,
    round_trips: Arc<AtomicUsize>,
}

impl Storage for Remote {
    fn load(&mut self, oid: Oid) -> durus_core::Result<Vec<u8>> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.inner.load(oid)
    }
    fn bulk_load(&mut self, oids: &[Oid]) -> durus_core::Result<Vec<Vec<u8>>> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.inner.bulk_load(oids)
    }
    fn prefetch_hint(&self) -> usize {
        32
    }
    fn new_oid(&mut self) -> durus_core::Result<Oid> {
        self.inner.new_oid()
    }
    fn begin(&mut self) {
        self.inner.begin()
    }
    fn store(&mut self, oid: Oid, record: Vec<u8>) -> durus_core::Result<()> {
        self.inner.store(oid, record)
    }
    fn end(&mut self, handler: &mut dyn CommitHandler) -> durus_core::Result<Durability> {
        self.inner.end(handler)
    }
    fn sync(&mut self) -> durus_core::Result<Vec<Oid>> {
        self.inner.sync()
    }
    fn pack(&mut self) -> durus_core::Result<()> {
        self.inner.pack()
    }
}

fn remote(hub: &Hub) -> (Connection, Arc<AtomicUsize>) {
    let round_trips = Arc::new(AtomicUsize::new(0));
    let storage = Remote {
        inner: hub.storage(),
        round_trips: round_trips.clone(),
    };
    (Connection::new(storage), round_trips)
}

fn setup(n: i64) -> Hub {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root().expect("root");
    root.write().expect("write").items = (0..n).map(|n| PRef::new(Item { n })).collect();
    conn.commit().expect("commit");
    hub
}

#[test]
fn a_traversal_needs_few_round_trips() -> durus_core::Result<()> {
    let hub = setup(320);
    let (conn, round_trips) = remote(&hub);
    let root: PRef<Root> = conn.root()?;
    let items = root.read()?.items.clone();
    let sum: i64 = items
        .iter()
        .map(|i| i.read().map(|i| i.n))
        .sum::<durus_core::Result<i64>>()?;
    assert_eq!(sum, 319 * 320 / 2);
    assert_eq!(conn.load_count(), 321);
    let trips = round_trips.load(Ordering::Relaxed);
    assert!(
        trips <= 1 + 1 + 320 / 32 * 2,
        "{trips} round trips for 321 objects"
    );
    Ok(())
}

#[test]
fn invalidations_drop_prefetched_records() -> durus_core::Result<()> {
    let hub = setup(3);
    let (conn, _) = remote(&hub);
    let root: PRef<Root> = conn.root()?; // prefetches the three items
    let items = root.read()?.items.clone();
    {
        let other = Connection::new(hub.storage());
        let r: PRef<Root> = other.root()?;
        let first = r.read()?.items[0].clone();
        first.write()?.n = 100;
        other.commit()?;
    }
    conn.abort()?;
    assert_eq!(
        items[0].read()?.n,
        100,
        "a stale prefetched record was used"
    );
    assert_eq!(items[1].read()?.n, 1);
    Ok(())
}
