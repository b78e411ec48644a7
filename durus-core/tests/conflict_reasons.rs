//! A conflict names the class of each conflicting object and the reason:
//! read by this transaction, written on both sides without a rule, a bound
//! crossed, a field changed on both sides; in Display and as data.

use durus_core::{
    ConflictReason, Connection, Error, Hub, MemoryStorage, PRef, Persistent, PersistentList,
};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
#[persistent(class = "shop.Shop")]
struct Shop {
    items: PRef<PersistentList<u32>>,
    item: PRef<Item>,
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
#[persistent(class = "shop.Item")]
struct Item {
    name: String,
    #[merge(sum(min = 0))]
    stock: i64,
}

/// Two connections on one hub, the root made with 5 in stock.
fn two() -> (Connection, Connection, PRef<Shop>, PRef<Shop>) {
    let hub = Hub::new(MemoryStorage::new());
    let a = Connection::new(hub.storage());
    let b = Connection::new(hub.storage());
    let ra: PRef<Shop> = a.root().expect("root");
    ra.read().expect("read").item.write().expect("write").stock = 5;
    a.commit().expect("commit");
    let rb: PRef<Shop> = b.root().expect("root");
    (a, b, ra, rb)
}

fn conflict(e: Error) -> durus_core::ConflictError {
    match e {
        Error::Conflict(c) => c,
        other => panic!("not a conflict: {other}"),
    }
}

#[test]
fn a_bound_crossed_names_the_class_field_and_bound() {
    let (a, b, ra, rb) = two();
    let ia = ra.read().expect("read").item.clone();
    let ib = rb.read().expect("read").item.clone();
    ia.write().expect("write").stock -= 4;
    ib.write().expect("write").stock -= 4;
    a.commit().expect("first");
    let e = b.commit().expect_err("5 - 4 - 4 is below 0");
    let text = e.to_string();
    let c = conflict(e);
    let detail = &c.details[0];
    assert_eq!(Some(detail.oid), ib.oid());
    assert_eq!(detail.class.as_deref(), Some("shop.Item"));
    match &detail.reason {
        ConflictReason::MergeRefused(m) => {
            assert_eq!(m.field, "stock");
            assert!(m.reason.contains("minimum"), "{}", m.reason);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        text.contains("shop.Item") && text.contains("stock") && text.contains("minimum"),
        "{text}"
    );
}

#[test]
fn a_field_changed_on_both_sides_is_named() {
    let (a, b, ra, rb) = two();
    ra.read().expect("read").item.write().expect("write").name = "tea".into();
    rb.read().expect("read").item.write().expect("write").name = "coffee".into();
    a.commit().expect("first");
    let e = b.commit().expect_err("name changed on both sides");
    let text = e.to_string();
    let c = conflict(e);
    assert!(
        matches!(&c.details[0].reason, ConflictReason::MergeRefused(m) if m.field == "name"),
        "{:?}",
        c.details
    );
    assert!(
        text.contains("shop.Item") && text.contains("name"),
        "{text}"
    );
}

#[test]
fn a_list_written_on_both_sides_has_no_rule() {
    let (a, b, ra, rb) = two();
    ra.read()
        .expect("read")
        .items
        .write()
        .expect("write")
        .push(1);
    rb.read()
        .expect("read")
        .items
        .write()
        .expect("write")
        .push(2);
    a.commit().expect("first");
    let e = b.commit().expect_err("lists have no merge rule");
    let text = e.to_string();
    let c = conflict(e);
    assert_eq!(c.details.len(), 1, "{:?}", c.details);
    assert_eq!(c.details[0].reason, ConflictReason::NoRule);
    assert!(c.details[0]
        .class
        .as_deref()
        .is_some_and(|s| s.contains("PersistentList")));
    assert!(text.contains("no merge rule"), "{text}");
}

#[test]
fn an_object_read_here_and_written_there_is_a_read() {
    let (a, b, ra, rb) = two();
    // b reads the item (its state decides what b writes) and writes the list.
    let stock = rb.read().expect("read").item.read().expect("read").stock;
    rb.read()
        .expect("read")
        .items
        .write()
        .expect("write")
        .push(stock as u32);
    ra.read().expect("read").item.write().expect("write").stock = 1;
    a.commit().expect("first");
    let e = b.commit().expect_err("read what a changed");
    let text = e.to_string();
    let c = conflict(e);
    assert_eq!(c.details[0].reason, ConflictReason::Read, "{:?}", c.details);
    assert_eq!(c.details[0].class.as_deref(), Some("shop.Item"));
    assert!(text.contains("read by this transaction"), "{text}");
}
