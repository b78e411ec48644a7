//! The object model over MemoryStorage: statuses, identity, lazy loading,
//! cache shrink, abort, schema evolution and bad records.

use durus_core::internals::record;
use durus_core::Storage as _;
use durus_core::{Connection, Error, Hub, MemoryStorage, Oid, PRef, Persistent, Status};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    items: Vec<PRef<Item>>,
    name: String,
}

#[derive(Persistent, Serialize, Deserialize)]
struct Item {
    n: i64,
    s: String,
    next: Option<PRef<Item>>,
}

fn item(n: i64) -> PRef<Item> {
    PRef::new(Item {
        n,
        s: format!("item {n}"),
        next: None,
    })
}

/// A second connection on the same data: the hub lets two connections share a storage.
fn two_connections() -> (Connection, Connection) {
    let hub = Hub::new(MemoryStorage::new());
    (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    )
}

#[test]
fn statuses_follow_durus_transitions() -> durus_core::Result<()> {
    let (a, b) = two_connections();
    let root: PRef<Root> = a.root()?;
    assert_eq!(root.oid(), Some(Oid::ROOT));
    let it = item(1);
    assert_eq!(it.status(), Status::Unsaved);
    assert_eq!(it.oid(), None);
    root.write()?.items.push(it.clone());
    assert_eq!(root.status(), Status::Unsaved);
    a.commit()?;
    assert_eq!(it.status(), Status::Saved);
    assert_eq!(root.status(), Status::Saved);
    assert!(it.oid().is_some());

    it.write()?.n = 2;
    assert_eq!(it.status(), Status::Unsaved);
    a.abort()?;
    assert_eq!(it.status(), Status::Ghost);
    assert_eq!(it.read()?.n, 1, "abort dropped the change");
    assert_eq!(it.status(), Status::Saved);
    a.commit()?; // a read-only transaction ends: `it` is not used in the next

    // Another client's commit turns our saved copy into a ghost at sync.
    let root_b: PRef<Root> = b.root()?;
    let it_b = root_b.read()?.items[0].clone();
    it_b.write()?.n = 7;
    b.commit()?;
    a.sync()?;
    assert_eq!(it.status(), Status::Ghost);
    assert_eq!(it.read()?.n, 7);
    Ok(())
}

#[test]
fn one_object_per_oid() -> durus_core::Result<()> {
    let conn = Connection::new(MemoryStorage::new());
    let root: PRef<Root> = conn.root()?;
    let shared = item(5);
    root.write()?.items.extend([shared.clone(), shared.clone()]);
    conn.commit()?;
    let oid = shared.oid().expect("stored");
    let again: PRef<Item> = conn.get(oid)?;
    assert!(again.ptr_eq(&shared));
    assert!(root.read()?.items[0].ptr_eq(&root.read()?.items[1]));
    // A handle of another type for the same oid is refused.
    match conn.get::<Root>(oid) {
        Err(Error::Encoding(_)) => {}
        other => panic!("expected a class error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn lazy_loading_of_a_large_graph() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    {
        let conn = Connection::new(hub.storage());
        let root: PRef<Root> = conn.root()?;
        let mut w = root.write()?;
        for i in 0..10_000 {
            w.items.push(item(i));
        }
        drop(w);
        conn.commit()?;
    }
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root()?;
    assert_eq!(conn.loads_from_storage(), 1);
    let items = root.read()?.items.clone();
    assert_eq!(items.len(), 10_000);
    assert!(items.iter().all(|i| i.status() == Status::Ghost));
    assert_eq!(items[1234].read()?.n, 1234);
    assert_eq!(items[9999].read()?.s, "item 9999");
    assert_eq!(
        conn.loads_from_storage(),
        3,
        "only the two items read were loaded"
    );
    Ok(())
}

#[test]
fn cache_shrinks_to_its_target_after_commit() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    {
        let conn = Connection::new(hub.storage());
        let root: PRef<Root> = conn.root()?;
        root.write()?.items = (0..500).map(item).collect();
        conn.commit()?;
    }
    let conn = Connection::with_cache_size(Box::new(hub.storage()), 100);
    let root: PRef<Root> = conn.root()?;
    let items = root.read()?.items.clone();
    for it in &items {
        it.read()?;
    }
    assert_eq!(conn.loaded_objects(), 501);
    conn.abort()?; // objects used in this transaction stay
    assert_eq!(conn.loaded_objects(), 501);
    for it in &items[..50] {
        it.read()?;
    }
    let held = items[300].read()?; // a borrowed object is never evicted
    conn.abort()?;
    assert_eq!(conn.loaded_objects(), 100);
    assert_eq!(items[300].status(), Status::Saved);
    drop(held);
    assert!(items[..50].iter().all(|i| i.status() == Status::Saved));
    let ghosts = items.iter().filter(|i| i.status() == Status::Ghost).count()
        + usize::from(root.status() == Status::Ghost);
    assert_eq!(ghosts, 401);
    Ok(())
}

#[test]
fn changes_to_plain_collections_are_never_lost() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root()?;
    root.write()?.name.push_str("grown in place");
    conn.commit()?;
    let other = Connection::new(hub.storage());
    assert_eq!(other.root::<Root>()?.read()?.name, "grown in place");
    Ok(())
}

#[test]
fn new_objects_reachable_from_new_objects_are_stored() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root()?;
    let tail = item(3);
    let mid = PRef::new(Item {
        n: 2,
        s: String::new(),
        next: Some(tail.clone()),
    });
    let head = PRef::new(Item {
        n: 1,
        s: String::new(),
        next: Some(mid),
    });
    root.write()?.items.push(head);
    conn.commit()?;
    assert!(tail.oid().is_some());
    let other = Connection::new(hub.storage());
    let r = other.root::<Root>()?;
    let h = r.read()?.items[0].clone();
    let m = h.read()?.next.clone().expect("mid");
    let t = m.read()?.next.clone().expect("tail");
    assert_eq!(t.read()?.n, 3);
    Ok(())
}

#[test]
fn old_records_load_with_serde_defaults() -> durus_core::Result<()> {
    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "app.Profile")]
    struct ProfileV1 {
        name: String,
    }
    #[derive(Persistent, Serialize, Deserialize, Default)]
    #[persistent(class = "app.Profile")]
    struct ProfileV2 {
        name: String,
        #[serde(default)]
        visits: u32,
    }
    let hub = Hub::new(MemoryStorage::new());
    {
        let conn = Connection::new(hub.storage());
        conn.root::<ProfileV1>()?.write()?.name = "ann".into();
        conn.commit()?;
    }
    let conn = Connection::new(hub.storage());
    let root = conn.root::<ProfileV2>()?;
    assert_eq!(root.read()?.name, "ann");
    assert_eq!(root.read()?.visits, 0);
    Ok(())
}

#[test]
fn bad_records_are_errors_not_panics() -> durus_core::Result<()> {
    // A hub refuses broken records at commit: put them in the storage
    // under it, as a damaged file would hold them.
    let mut storage = MemoryStorage::new();
    let oids: Vec<Oid> = (0..8)
        .map(|_| storage.new_oid())
        .collect::<durus_core::Result<_>>()?;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        record::pack(oids[2], b"", &[])?,
        record::pack(oids[3], b"\x7f\x00", &[])?,
        record::pack(oids[4], b"\x80\x02cfoo\nBar\nq\x00.", &[])?,
        record::pack(
            oids[5],
            &durus_core::internals::encoding::encode(None, "tests::Item", &7u8)?,
            &[],
        )?,
        record::pack(oids[6], b"\x6aitem\xff\xff\xff\xff\xff\xff", &[])?,
        record::pack(Oid(999), b"x", &[])?,
    ];
    let records: Vec<(Oid, Vec<u8>)> = oids.iter().copied().zip(garbage).collect();
    storage.begin();
    for (oid, r) in records {
        storage.store(oid, r)?;
    }
    storage.end(&mut durus_core::storage::NoConflicts)?.wait()?;
    let hub = Hub::new(storage);
    let conn = Connection::new(hub.storage());
    for oid in &oids {
        let got = conn.get::<Item>(*oid);
        assert!(got.is_err(), "oid {oid} loaded from garbage");
    }
    match conn.get::<Item>(oids[4]) {
        Err(e) => assert!(
            e.to_string()
                .contains("Python Durus record of class foo.Bar"),
            "{e}"
        ),
        Ok(_) => unreachable!(),
    }
    assert!(matches!(
        conn.get::<Item>(Oid(5000)),
        Err(Error::NotFound(_))
    ));
    Ok(())
}
