//! The same key of a map changed by two connections at once (DESIGN.md
//! section 14): a read-modify-write is never lost. Both connections read
//! `"page" -> 4` and write 5; either the later commit conflicts and its
//! retry makes 6, or a per-key rule merges the two increments into 6.
//! Each test interleaves by hand: both changes are made, then both commits.

use durus_core::persistent::merge::Merge;
use durus_core::{
    per_key, BTree, Connection, Error, Hub, MemoryStorage, PRef, Persistent, PersistentDict,
};
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

// Per-key rules: the same maps with a rule for a key both sides changed.

/// Values that merge field by field, per key.
#[derive(Merge, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
struct Stats {
    #[merge(sum)]
    hits: u64,
    #[merge(max)]
    best: u64,
}

/// Map fields with per-key rules.
#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "samekey.Fields")]
struct Fields {
    #[merge(per_key(sum))]
    views: BTreeMap<String, u64>,
    #[merge(per_key(sum(min = 0)))]
    stock: BTreeMap<String, i64>,
    #[merge(per_key(same))]
    flags: BTreeMap<String, bool>,
    #[merge(per_key(nested))]
    stats: BTreeMap<String, Stats>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "samekey.Keyed")]
struct Keyed {
    views_tree: BTree<String, u64, per_key::Sum>,
    views_dict: PRef<PersistentDict<String, u64, per_key::Sum>>,
    stock_tree: BTree<String, i64, per_key::Sum<0>>,
    stock_dict: PRef<PersistentDict<String, i64, per_key::Sum<0>>>,
    flags_tree: BTree<String, bool, per_key::Same>,
    flags_dict: PRef<PersistentDict<String, bool, per_key::Same>>,
    stats_tree: BTree<String, Stats, per_key::Nested>,
    stats_dict: PRef<PersistentDict<String, Stats, per_key::Nested>>,
    fields: PRef<Fields>,
}

/// One kind of map with a per-key rule, whatever its values.
trait Keys<V> {
    fn get(&self, key: &str) -> R<Option<V>>;
    fn set(&self, key: &str, value: V) -> R<()>;
}

/// A map of `Keyed`, chosen by name, seen from one connection.
struct On<'a>(&'a Connection, &'static str);

/// Implements `Keys` for a view of one kind of map of `Keyed`: its tree,
/// its dict and its field.
macro_rules! keys_impl {
    ($view:ident, $v:ty, $tree:ident, $dict:ident, $field:ident) => {
        struct $view<'a>(On<'a>);

        impl Keys<$v> for $view<'_> {
            fn get(&self, key: &str) -> R<Option<$v>> {
                let root: PRef<Keyed> = self.0 .0.root()?;
                let r = root.read()?;
                Ok(match self.0 .1 {
                    "tree" => r.$tree.get(key)?,
                    "dict" => r.$dict.read()?.get(key).cloned(),
                    _ => r.fields.read()?.$field.get(key).cloned(),
                })
            }

            fn set(&self, key: &str, value: $v) -> R<()> {
                let root: PRef<Keyed> = self.0 .0.root()?;
                let r = root.read()?;
                match self.0 .1 {
                    "tree" => {
                        r.$tree.insert(key.to_string(), value)?;
                    }
                    "dict" => {
                        r.$dict.write()?.insert(key.to_string(), value);
                    }
                    _ => {
                        r.fields.write()?.$field.insert(key.to_string(), value);
                    }
                }
                Ok(())
            }
        }
    };
}

keys_impl!(Counts, u64, views_tree, views_dict, views);
keys_impl!(Stock, i64, stock_tree, stock_dict, stock);
keys_impl!(Flags, bool, flags_tree, flags_dict, flags);
keys_impl!(StatsOf, Stats, stats_tree, stats_dict, stats);

const KINDS: [&str; 3] = ["tree", "dict", "field"];

/// A hub whose `Keyed` maps hold `"page" -> 4` views, `"pears" -> 4` in
/// stock, `"sale" -> false` and `"page"` stats.
fn keyed() -> R<Hub> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    for kind in KINDS {
        Counts(On(&conn, kind)).set("page", 4)?;
        Stock(On(&conn, kind)).set("pears", 4)?;
        Flags(On(&conn, kind)).set("sale", false)?;
        StatsOf(On(&conn, kind)).set("page", Stats { hits: 4, best: 1 })?;
    }
    conn.commit()?;
    Ok(hub)
}

fn two(hub: &Hub) -> (Connection, Connection) {
    (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    )
}

fn incr(keys: &impl Keys<u64>, key: &str) -> R<()> {
    let n = keys.get(key)?.unwrap_or(0);
    keys.set(key, n + 1)
}

#[test]
fn per_key_sum_adds_both_increments_of_a_key() -> R<()> {
    for kind in KINDS {
        let hub = keyed()?;
        let (a, b) = two(&hub);
        incr(&Counts(On(&a, kind)), "page")?;
        incr(&Counts(On(&b, kind)), "page")?;
        a.commit()?;
        b.commit()?;
        assert_eq!(b.merge_count(), 1, "{kind}");
        let c = Connection::new(hub.storage());
        assert_eq!(Counts(On(&c, kind)).get("page")?, Some(6), "{kind}");
    }
    Ok(())
}

/// A key new on both sides counts from zero; in a tree the entry count
/// cannot merge it, so the later commit conflicts and its retry adds up.
#[test]
fn per_key_sum_of_a_key_added_by_both() -> R<()> {
    for kind in KINDS {
        let hub = keyed()?;
        let (a, b) = two(&hub);
        incr(&Counts(On(&a, kind)), "new")?;
        incr(&Counts(On(&b, kind)), "new")?;
        a.commit()?;
        if kind == "tree" {
            assert!(matches!(b.commit(), Err(Error::Conflict(_))));
            b.abort()?;
            b.transaction(3, |c| incr(&Counts(On(c, kind)), "new"))?;
        } else {
            b.commit()?;
        }
        let c = Connection::new(hub.storage());
        assert_eq!(Counts(On(&c, kind)).get("new")?, Some(2), "{kind}");
    }
    Ok(())
}

#[test]
fn per_key_same_merges_equal_values_only() -> R<()> {
    for kind in KINDS {
        let hub = keyed()?;
        let (a, b) = two(&hub);
        Flags(On(&a, kind)).set("sale", true)?;
        Flags(On(&b, kind)).set("sale", true)?;
        a.commit()?;
        b.commit()?;
        let c = Connection::new(hub.storage());
        assert_eq!(Flags(On(&c, kind)).get("sale")?, Some(true), "{kind}");
        // Different values of one key still conflict.
        let (a, b) = two(&hub);
        Flags(On(&a, kind)).set("open", true)?;
        Flags(On(&b, kind)).set("open", false)?;
        a.commit()?;
        assert!(matches!(b.commit(), Err(Error::Conflict(_))), "{kind}");
    }
    Ok(())
}

#[test]
fn per_key_nested_merges_a_keys_value_field_by_field() -> R<()> {
    for kind in KINDS {
        let hub = keyed()?;
        let (a, b) = two(&hub);
        StatsOf(On(&a, kind)).set("page", Stats { hits: 5, best: 7 })?;
        StatsOf(On(&b, kind)).set("page", Stats { hits: 6, best: 3 })?;
        a.commit()?;
        b.commit()?;
        let c = Connection::new(hub.storage());
        let got: Option<Stats> = StatsOf(On(&c, kind)).get("page")?;
        assert_eq!(got, Some(Stats { hits: 7, best: 7 }), "{kind}");
    }
    Ok(())
}

/// One order of `qty` pears: refused when the stock this transaction sees
/// is short.
fn order(keys: &impl Keys<i64>, qty: i64) -> R<bool> {
    let left = keys.get("pears")?.unwrap_or(0);
    if left < qty {
        return Ok(false);
    }
    keys.set("pears", left - qty)?;
    Ok(true)
}

#[test]
fn per_key_bounded_sum_conflicts_below_the_minimum() -> R<()> {
    for kind in KINDS {
        let hub = keyed()?;
        let (a, b) = two(&hub);
        // Both see 4 pears and take 3.
        assert!(order(&Stock(On(&a, kind)), 3)?);
        assert!(order(&Stock(On(&b, kind)), 3)?);
        a.commit()?;
        assert!(matches!(b.commit(), Err(Error::Conflict(_))), "{kind}");
        b.abort()?;
        // The retry sees 1 pear left and refuses.
        assert!(!b.transaction(3, |c| order(&Stock(On(c, kind)), 3))?);
        // Two orders that both fit merge.
        let (a, b) = two(&hub);
        order(&Stock(On(&a, kind)), -5)?; // a delivery
        assert!(order(&Stock(On(&b, kind)), 1)?);
        a.commit()?;
        b.commit()?;
        let c = Connection::new(hub.storage());
        assert_eq!(Stock(On(&c, kind)).get("pears")?, Some(5), "{kind}");
    }
    Ok(())
}
