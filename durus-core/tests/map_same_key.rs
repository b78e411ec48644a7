//! The same key of a map changed by two connections at once (DESIGN.md
//! section 14): a read-modify-write is never lost. Both connections read
//! `"page" -> 4` and write 5; either the later commit conflicts and its
//! retry makes 6, or a per-key rule merges the two increments into 6.
//! Each test interleaves by hand: both changes are made, then both commits.

use durus_core::{BTree, Connection, Error, Hub, MemoryStorage, PRef, Persistent, PersistentDict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

type R<T> = durus_core::Result<T>;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "samekey.Root")]
struct Root {
    tree: BTree<String, u64>,
    dict: PRef<PersistentDict<String, u64>>,
    field: PRef<Views>,
}

/// A map field with the union rule.
#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "samekey.Views")]
struct Views {
    #[merge(union)]
    pages: BTreeMap<String, u64>,
}

/// Which map a test works on.
#[derive(Clone, Copy, Debug)]
enum Map {
    Tree,
    Dict,
    Field,
}

fn get(conn: &Connection, map: Map, key: &str) -> R<Option<u64>> {
    let root: PRef<Root> = conn.root()?;
    let r = root.read()?;
    Ok(match map {
        Map::Tree => r.tree.get(key)?,
        Map::Dict => r.dict.read()?.get(key).copied(),
        Map::Field => r.field.read()?.pages.get(key).copied(),
    })
}

fn set(conn: &Connection, map: Map, key: &str, value: u64) -> R<()> {
    let root: PRef<Root> = conn.root()?;
    let r = root.read()?;
    match map {
        Map::Tree => {
            r.tree.insert(key.to_string(), value)?;
        }
        Map::Dict => {
            r.dict.write()?.insert(key.to_string(), value);
        }
        Map::Field => {
            r.field.write()?.pages.insert(key.to_string(), value);
        }
    }
    Ok(())
}

/// One increment, read then written back.
fn increment(conn: &Connection, map: Map, key: &str) -> R<()> {
    let n = get(conn, map, key)?.unwrap_or(0);
    set(conn, map, key, n + 1)
}

/// A hub whose maps hold `"page" -> 4` and a few other keys.
fn setup() -> R<Hub> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    for map in [Map::Tree, Map::Dict, Map::Field] {
        for (k, v) in [("about", 1), ("home", 2), ("page", 4)] {
            set(&conn, map, k, v)?;
        }
    }
    conn.commit()?;
    Ok(hub)
}

/// Two connections read 4 and write 5; the later commit conflicts, its
/// retry reads 5 and writes 6.
fn lost_update_is_refused(map: Map) -> R<()> {
    let hub = setup()?;
    let a = Connection::new(hub.storage());
    let b = Connection::new(hub.storage());
    increment(&a, map, "page")?;
    increment(&b, map, "page")?;
    a.commit()?;
    let second = b.commit();
    assert!(
        matches!(second, Err(Error::Conflict(_))),
        "{map:?}: both commits were acknowledged, one increment is lost: {second:?}"
    );
    b.abort()?;
    b.transaction(3, |c| increment(c, map, "page"))?;
    let c = Connection::new(hub.storage());
    assert_eq!(get(&c, map, "page")?, Some(6), "{map:?}");
    Ok(())
}

#[test]
fn btree_same_key_read_modify_write_is_never_lost() -> R<()> {
    lost_update_is_refused(Map::Tree)
}

#[test]
fn dict_same_key_read_modify_write_is_never_lost() -> R<()> {
    lost_update_is_refused(Map::Dict)
}

#[test]
fn union_map_field_same_key_read_modify_write_is_never_lost() -> R<()> {
    lost_update_is_refused(Map::Field)
}

/// Both sides removing a key, or a key added by both with the same value,
/// is a change of the same key too.
#[test]
fn same_key_added_or_removed_by_both_conflicts() -> R<()> {
    for map in [Map::Dict, Map::Field] {
        let hub = setup()?;
        let a = Connection::new(hub.storage());
        let b = Connection::new(hub.storage());
        set(&a, map, "new", 1)?;
        set(&b, map, "new", 1)?;
        a.commit()?;
        assert!(matches!(b.commit(), Err(Error::Conflict(_))), "{map:?}");
        b.abort()?;
    }
    let hub = setup()?;
    let a = Connection::new(hub.storage());
    let b = Connection::new(hub.storage());
    let ra: PRef<Root> = a.root()?;
    let rb: PRef<Root> = b.root()?;
    ra.read()?.dict.write()?.remove("home");
    rb.read()?.dict.write()?.remove("home");
    a.commit()?;
    assert!(matches!(b.commit(), Err(Error::Conflict(_))));
    Ok(())
}

/// Changes of different keys still merge, in every map.
#[test]
fn different_keys_still_merge() -> R<()> {
    for map in [Map::Tree, Map::Dict, Map::Field] {
        let hub = setup()?;
        let a = Connection::new(hub.storage());
        let b = Connection::new(hub.storage());
        increment(&a, map, "page")?;
        increment(&b, map, "home")?;
        set(&b, map, "contact", 1)?;
        a.commit()?;
        b.commit()?;
        assert_eq!(b.merge_count(), 1, "{map:?}: the leaf or the map's object");
        let c = Connection::new(hub.storage());
        assert_eq!(get(&c, map, "page")?, Some(5), "{map:?}");
        assert_eq!(get(&c, map, "home")?, Some(3), "{map:?}");
        assert_eq!(get(&c, map, "contact")?, Some(1), "{map:?}");
    }
    Ok(())
}
