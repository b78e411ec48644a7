//! One suite of Connection behaviours, run over every storage.
//!
//! `single` needs one connection; `shared` needs a way to open several
//! connections on one database (in-process hub, or a server).

use durus_core::{ConflictKind, Connection, Error, PRef, Persistent, Status};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "conformance.Root")]
pub struct Root {
    pub items: Vec<PRef<Item>>,
    pub counter: Option<PRef<Counter>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "conformance.Item")]
pub struct Item {
    pub n: i64,
    pub s: String,
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
#[persistent(class = "conformance.Counter")]
pub struct Counter {
    #[merge(sum)]
    pub hits: i64,
    pub label: String,
}

fn item(n: i64) -> PRef<Item> {
    PRef::new(Item {
        n,
        s: format!("{n:0>40}"),
    })
}

/// Behaviours of one connection alone.
pub fn single(conn: Connection) -> durus_core::Result<()> {
    let root: PRef<Root> = conn.root()?;
    assert_eq!(root.oid(), Some(durus_core::Oid::ROOT));
    root.write()?.items = (0..300).map(item).collect();
    conn.commit()?;
    assert_eq!(root.status(), Status::Saved);

    // Changes survive an abort only when committed.
    let first = root.read()?.items[0].clone();
    first.write()?.n = -1;
    conn.abort()?;
    assert_eq!(first.status(), Status::Ghost);
    assert_eq!(first.read()?.n, 0);

    // Identity: get by oid gives the same object.
    let oid = first.oid().expect("stored");
    assert!(conn.get::<Item>(oid)?.ptr_eq(&first));
    assert!(matches!(conn.get::<Root>(oid), Err(Error::Encoding(_))));

    // Cache shrink after abort evicts saved objects beyond the target.
    conn.set_cache_size(50);
    for it in root.read()?.items.clone() {
        it.read()?;
    }
    conn.abort()?;
    conn.abort()?;
    assert!(
        conn.loaded_objects() <= 50,
        "{} loaded",
        conn.loaded_objects()
    );
    let sum: i64 = root
        .read()?
        .items
        .iter()
        .map(|i| i.read().map(|i| i.n))
        .sum::<durus_core::Result<i64>>()?;
    assert_eq!(sum, 299 * 300 / 2);
    Ok(())
}

/// Behaviours of several connections on one database.
pub fn shared(open: &dyn Fn() -> Connection) -> durus_core::Result<()> {
    let a = open();
    let b = open();
    let root_a: PRef<Root> = a.root()?;
    root_a.write()?.counter = Some(PRef::new(Counter::default()));
    root_a.write()?.items.push(item(1));
    a.commit()?;

    // b sees a's commit.
    let root_b: PRef<Root> = b.root()?;
    b.abort()?;
    let counter_b = root_b.read()?.counter.clone().expect("counter");
    let counter_a = root_a.read()?.counter.clone().expect("counter");
    let item_a = root_a.read()?.items[0].clone();
    let item_b = root_b.read()?.items[0].clone();
    assert_eq!(item_b.read()?.n, 1);

    // Write-write on a plain object: the second committer conflicts.
    item_a.write()?.n = 2;
    item_b.write()?.n = 3;
    a.commit()?;
    match b.commit() {
        Err(Error::Conflict(c)) => {
            assert_eq!(c.kind, ConflictKind::Write);
            assert_eq!(c.oids, vec![item_b.oid().expect("oid")]);
        }
        other => panic!("expected a write conflict, got {other:?}"),
    }
    b.abort()?;
    assert_eq!(item_b.read()?.n, 2, "invalidated object reloads");
    b.transaction(3, |_| {
        item_b.write()?.n += 10;
        Ok(())
    })?;
    a.sync()?;
    assert_eq!(item_a.read()?.n, 12);

    // Concurrent increments of a resolvable counter merge.
    counter_a.read()?;
    counter_b.read()?;
    counter_a.write()?.hits += 1;
    counter_b.write()?.hits += 2;
    a.commit()?;
    b.commit()?;
    assert_eq!(b.merge_count(), 1);
    a.abort()?;
    assert_eq!(counter_a.read()?.hits, 3);

    // ...but not when the same three-way field changed on both sides.
    counter_a.write()?.label = "a".into();
    counter_b.write()?.label = "b".into();
    a.commit()?;
    assert!(matches!(b.commit(), Err(Error::Conflict(_))));
    b.abort()?;
    assert_eq!(counter_b.read()?.label, "a");
    Ok(())
}
