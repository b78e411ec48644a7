//! The byte layout documented in docs/RECORDS.md, checked byte for byte.

use durus_core::internals::record;
use durus_core::internals::LoadReply;
use durus_core::{Connection, Hub, MemoryStorage, Oid, PRef, Persistent};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "app.Parent")]
struct Parent {
    items: Vec<PRef<Item>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "app.Item")]
struct Item {
    n: i64,
    parent: PRef<Parent>,
}

#[test]
fn a_committed_record_has_the_documented_bytes() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Parent> = conn.root()?;
    let item = PRef::new(Item {
        n: 7,
        parent: root.clone(),
    });
    root.write()?.items.push(item.clone());
    conn.commit()?;
    let oid = item.oid().expect("stored");

    let LoadReply::Record(rec) = durus_core::internals::session_load(&hub.session(), oid)? else {
        panic!("no record for the item");
    };
    let mut data = vec![0x68];
    data.extend_from_slice(b"app.Item");
    data.extend_from_slice(&[0xa2, 0x61, b'n', 0x07, 0x66]);
    data.extend_from_slice(b"parent");
    data.extend_from_slice(&[0xd9, 0x44, 0x55, 0x00]);
    let mut expected = oid.to_bytes().to_vec();
    expected.extend_from_slice(&(data.len() as u32).to_be_bytes());
    expected.extend_from_slice(&data);
    expected.extend_from_slice(&Oid::ROOT.to_bytes());
    assert_eq!(rec, expected);

    let view = record::unpack(&rec)?;
    assert_eq!(view.ref_oids().collect::<Vec<_>>(), vec![Oid::ROOT]);
    assert_eq!(
        durus_core::internals::encoding::class_name(oid, view.data)?,
        "app.Item"
    );
    Ok(())
}

#[test]
fn the_root_refers_to_its_items_sorted_and_unique() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Parent> = conn.root()?;
    let a = PRef::new(Item {
        n: 1,
        parent: root.clone(),
    });
    let b = PRef::new(Item {
        n: 2,
        parent: root.clone(),
    });
    root.write()?.items = vec![b.clone(), a.clone(), b.clone()];
    conn.commit()?;
    let LoadReply::Record(rec) = durus_core::internals::session_load(&hub.session(), Oid::ROOT)?
    else {
        panic!("no root record");
    };
    let mut want = vec![a.oid().expect("a"), b.oid().expect("b")];
    want.sort();
    assert_eq!(record::unpack(&rec)?.ref_oids().collect::<Vec<_>>(), want);
    Ok(())
}
