//! A handle kept to an object that a pack then removed: linking it again
//! must not commit a reference to a record that is gone.

use durus_core::{Connection, Hub, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
struct Plain {
    value: i64,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Holder {
    keep: Option<PRef<Plain>>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    x: Option<PRef<Plain>>,
    holder: Option<PRef<Holder>>,
}

/// What a fresh client finds under `holder.keep`, if it is linked.
fn kept_value(hub: &Hub) -> Option<durus_core::Result<i64>> {
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root().expect("root");
    let holder = root.read().expect("root").holder.clone().expect("holder");
    let keep = holder.read().expect("holder").keep.clone();
    keep.map(|k| k.read().map(|p| p.value))
}

#[test]
fn linking_an_object_a_pack_removed_does_not_commit_a_dangling_reference() {
    let hub = Hub::new(MemoryStorage::new());
    let (a, b) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    {
        let root: PRef<Root> = a.root().expect("root");
        let mut r = root.write().expect("write");
        r.x = Some(PRef::new(Plain { value: 7 }));
        r.holder = Some(PRef::new(Holder::default()));
    }
    a.commit().expect("commit");
    let root_a: PRef<Root> = a.root().expect("root");
    let (x, holder) = {
        let r = root_a.read().expect("read");
        (r.x.clone().expect("x"), r.holder.clone().expect("holder"))
    };
    assert_eq!(x.read().expect("x").value, 7);
    holder.read().expect("holder");
    a.commit().expect("a's read-only transaction ends");

    // b unlinks x; a pack removes it.
    let root_b: PRef<Root> = b.root().expect("root");
    root_b.write().expect("write").x = None;
    b.commit().expect("b unlinks x");
    b.pack().expect("pack");

    // a links the object it still holds a handle to.
    let outcome = a.transaction(3, |_| {
        holder.write()?.keep = Some(x.clone());
        Ok(())
    });
    match outcome {
        Ok(()) => match kept_value(&hub) {
            Some(Ok(7)) => {}
            other => panic!("a's commit returned Ok, yet the object it linked reads as {other:?}"),
        },
        Err(e) => assert!(e.is_conflict(), "{e:?}"),
    }
}

#[test]
fn linking_an_object_removed_by_this_connections_pack_is_not_dangling() {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root().expect("root");
    let x = PRef::new(Plain { value: 7 });
    {
        let mut r = root.write().expect("write");
        r.x = Some(x.clone());
        r.holder = Some(PRef::new(Holder::default()));
    }
    conn.commit().expect("commit");
    root.write().expect("write").x = None;
    conn.commit().expect("unlink x");
    conn.pack().expect("pack");
    let holder = root.read().expect("read").holder.clone().expect("holder");
    holder.write().expect("write").keep = Some(x.clone());
    match conn.commit() {
        Ok(()) => match kept_value(&hub) {
            Some(Ok(7)) => {}
            other => panic!("the commit returned Ok, yet the object it linked reads as {other:?}"),
        },
        Err(e) => assert!(e.is_conflict(), "{e:?}"),
    }
}
