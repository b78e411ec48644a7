//! The acknowledged writes that used to be lost without an error (issue
//! "Schema changes and merge rules that can never lose a write silently",
//! cases 2, 3 and 4). Each runs two connections on one hub over a file
//! written before the change: both apply their changes, then both commit.

mod support;

use durus_core::{Connection, Error, FileStorage, Hub, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Barrier};
use support::Scratch;

/// A database file written by a program that has since been changed: `f`
/// runs on a connection of its own, and the file is closed after it.
fn written_before(path: &Path, f: impl FnOnce(&Connection) -> durus_core::Result<()>) {
    let conn = Connection::new(FileStorage::open(path).expect("open"));
    f(&conn).expect("write the old database");
    conn.commit().expect("commit");
}

fn hub_on(path: &Path) -> Hub {
    Hub::new(FileStorage::open(path).expect("reopen"))
}

// ---------------------------------------------------------------------
// Case 2: a field without a rule in a type with rules.

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "shop.Seq")]
struct Seq {
    #[merge(sum)]
    orders: i64,
    next_id: u64,
}

#[test]
fn case2_the_same_change_to_a_field_without_a_rule_conflicts() -> durus_core::Result<()> {
    let dir = Scratch::new("case2");
    let path = dir.path("shop.durus");
    written_before(&path, |conn| {
        conn.root::<Seq>()?;
        Ok(())
    });
    let hub = hub_on(&path);
    let (a, b) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    let (sa, sb) = (a.root::<Seq>()?, b.root::<Seq>()?);
    // Both read next_id = 0 and take id 1 for their order.
    for seq in [&sa, &sb] {
        let mut s = seq.write()?;
        s.next_id += 1;
        s.orders += 1;
    }
    a.commit()?;
    let second = b.commit();
    assert!(
        matches!(second, Err(Error::Conflict(_))),
        "two orders with id 1: {second:?}"
    );
    b.abort()?;
    // The retry sees id 1 taken and takes 2.
    {
        let mut s = sb.write()?;
        s.next_id += 1;
        s.orders += 1;
    }
    b.commit()?;
    a.abort()?;
    assert_eq!(
        *sa.read()?,
        Seq {
            orders: 2,
            next_id: 2
        }
    );
    hub.close()?;
    Ok(())
}

// ---------------------------------------------------------------------
// Case 3: a summed stock goes negative.

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "shop.Product")]
struct Product {
    name: String,
    #[merge(sum(min = 0))]
    stock: i64,
}

/// Takes `qty` from the stock when there is enough; false when there is not.
fn order(product: &PRef<Product>, qty: i64) -> durus_core::Result<bool> {
    if product.read()?.stock < qty {
        return Ok(false);
    }
    product.write()?.stock -= qty;
    Ok(true)
}

#[test]
fn case3_a_bounded_stock_never_goes_negative() -> durus_core::Result<()> {
    let dir = Scratch::new("case3");
    let path = dir.path("shop.durus");
    written_before(&path, |conn| {
        let p = conn.root::<Product>()?;
        let mut p = p.write()?;
        p.name = "kettle".into();
        p.stock = 4;
        Ok(())
    });
    let hub = hub_on(&path);
    let (a, b) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    let (pa, pb) = (a.root::<Product>()?, b.root::<Product>()?);
    // Both see 4 in stock and take 3.
    assert!(order(&pa, 3)?);
    assert!(order(&pb, 3)?);
    a.commit()?;
    assert!(b.commit().unwrap_err().is_conflict(), "4 - 3 - 3 < 0");
    b.abort()?;
    // The retry sees 1 left and refuses the order itself.
    assert!(!order(&pb, 3)?);
    b.commit()?;
    // Orders that fit still merge.
    a.abort()?;
    b.abort()?;
    assert!(order(&pa, 1)?);
    pb.write()?.stock += 10; // a delivery
    a.commit()?;
    b.commit()?;
    a.abort()?;
    assert_eq!(pa.read()?.stock, 10);
    hub.close()?;
    Ok(())
}

#[test]
fn case3_eight_concurrent_orders_of_three_against_four() {
    let dir = Scratch::new("case3-threads");
    let path = dir.path("shop.durus");
    written_before(&path, |conn| {
        conn.root::<Product>()?.write()?.stock = 4;
        Ok(())
    });
    let hub = hub_on(&path);
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let storage = hub.storage();
            let start = start.clone();
            std::thread::spawn(move || -> durus_core::Result<bool> {
                let conn = Connection::new(storage);
                let product = conn.root::<Product>()?;
                product.read()?;
                start.wait();
                conn.transaction(100, |_| order(&product, 3))
            })
        })
        .collect();
    let placed = threads
        .into_iter()
        .map(|t| t.join().expect("thread").expect("transaction"))
        .filter(|placed| *placed)
        .count();
    let conn = Connection::new(hub.storage());
    let stock = conn.root::<Product>().unwrap().read().unwrap().stock;
    assert_eq!((placed, stock), (1, 1), "one order of 3 fits in 4");
    drop(conn);
    hub.close().unwrap();
}

// ---------------------------------------------------------------------
// Case 4: an older program drops a newer program's fields.

mod v1 {
    use super::*;

    /// The product as version 1 of the program knows it.
    #[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
    #[persistent(class = "shop.Item")]
    pub struct Item {
        pub name: String,
        #[merge(sum(min = 0))]
        pub stock: i64,
    }
}

mod v2 {
    use super::*;

    /// Version 2 adds the weight.
    #[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
    #[persistent(class = "shop.Item")]
    pub struct Item {
        pub name: String,
        #[merge(sum(min = 0))]
        pub stock: i64,
        #[serde(default)]
        pub weight_g: u32,
    }
}

#[test]
fn case4_an_older_program_keeps_a_newer_programs_fields() -> durus_core::Result<()> {
    let dir = Scratch::new("case4");
    let path = dir.path("shop.durus");
    written_before(&path, |conn| {
        let item = conn.root::<v1::Item>()?;
        let mut item = item.write()?;
        item.name = "kettle".into();
        item.stock = 5;
        Ok(())
    });
    let hub = hub_on(&path);
    let (old, new) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    // Version 2 sets the weight; version 1, running at the same time,
    // then changes another field of the same object.
    let item2 = new.root::<v2::Item>()?;
    item2.write()?.weight_g = 1234;
    new.commit()?;
    let item1 = old.root::<v1::Item>()?;
    assert_eq!(
        durus_core::schema::unknown_fields(&item1),
        ["weight_g"],
        "version 1 keeps what it does not know"
    );
    item1.write()?.name = "kettle, steel".into();
    old.commit()?;
    new.abort()?;
    assert_eq!(
        *item2.read()?,
        v2::Item {
            name: "kettle, steel".into(),
            stock: 5,
            weight_g: 1234
        }
    );

    // Both change it concurrently: version 1's commit merges with the
    // stored record, whose weight is the newest.
    old.abort()?;
    item1.write()?.stock -= 1;
    {
        let mut i = item2.write()?;
        i.weight_g = 1300;
        i.stock -= 2;
    }
    new.commit()?;
    old.commit()?;
    new.abort()?;
    assert_eq!(
        *item2.read()?,
        v2::Item {
            name: "kettle, steel".into(),
            stock: 2,
            weight_g: 1300
        }
    );
    drop((old, new));
    hub.close()?;

    // And the file keeps it after a restart.
    let conn = Connection::new(FileStorage::open(&path)?);
    assert_eq!(conn.root::<v2::Item>()?.read()?.weight_g, 1300);
    Ok(())
}
