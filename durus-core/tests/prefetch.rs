//! Prefetching: a storage that asks for it gets a loaded record's
//! references in one bulk load, and invalidations drop prefetched records.

use durus_core::storage::{Counting, StorageCounts};
use durus_core::{Connection, Hub, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};
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
fn remote(hub: &Hub) -> (Connection, Arc<StorageCounts>) {
    let (storage, counts) = Counting::new(hub.storage());
    (Connection::new(storage.with_prefetch_hint(32)), counts)
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
    assert_eq!(conn.loads_from_storage(), 321);
    let trips = round_trips.loads().requests;
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
