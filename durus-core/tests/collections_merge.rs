//! Concurrent commits of the same collection from two connections: what
//! merges and what conflicts (docs/COLLECTIONS.md).

mod collections_common;

use durus_core::{
    per_key, BTree, Connection, Error, Hub, MemoryStorage, PRef, Persistent, PersistentDict,
    PersistentList, PersistentSet, Result,
};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    dict: PRef<PersistentDict<String, i64>>,
    set: PRef<PersistentSet<String>>,
    list: PRef<PersistentList<i64>>,
    tree: BTree<u64, String>,
}

fn setup() -> Result<(Hub, Connection, Connection)> {
    let hub = Hub::new(MemoryStorage::new());
    let a = Connection::new(hub.storage());
    let root: PRef<Root> = a.root()?;
    // The root is made with empty collections; give them content.
    root.read()?
        .dict
        .write()?
        .extend([("x".to_string(), 0), ("y".to_string(), 0)]);
    root.read()?.set.write()?.extend(["r".to_string()]);
    let tree = root.read()?.tree.clone();
    for k in 0..20 {
        tree.insert(k * 10, format!("{k}"))?;
    }
    a.commit()?;
    let b = Connection::new(hub.storage());
    b.root::<Root>()?;
    Ok((hub, a, b))
}

fn root(conn: &Connection) -> Result<PRef<Root>> {
    conn.root()
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Conflict(_)))
}

#[test]
fn dict_changes_to_different_keys_merge() -> Result<()> {
    let (hub, a, b) = setup()?;
    let (ra, rb) = (root(&a)?, root(&b)?);
    let (da, db) = (ra.read()?.dict.clone(), rb.read()?.dict.clone());
    da.write()?.insert("x".into(), 1);
    da.write()?.insert("new-a".into(), 5);
    db.write()?.insert("y".into(), 2);
    db.write()?.remove("new-b-never");
    a.commit()?;
    b.commit()?;
    assert_eq!(b.merge_count(), 1);
    // The merged state is what b sees and what is stored.
    assert_eq!(db.read()?.get("x"), Some(&1));
    let c = Connection::new(hub.storage());
    let dc = root(&c)?.read()?.dict.clone();
    let expect: PersistentDict<String, i64> =
        [("new-a".into(), 5), ("x".into(), 1), ("y".into(), 2)].into();
    assert_eq!(*dc.read()?, expect);
    Ok(())
}

#[test]
fn dict_same_key_changed_differently_conflicts_then_retry_succeeds() -> Result<()> {
    let (hub, a, b) = setup()?;
    let (da, db) = (
        root(&a)?.read()?.dict.clone(),
        root(&b)?.read()?.dict.clone(),
    );
    da.write()?.insert("x".into(), 1);
    db.write()?.insert("x".into(), 2);
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    b.transaction(3, |_| {
        let mut d = db.write()?;
        let x = d.get("x").copied().unwrap_or(0);
        d.insert("x".into(), x + 2);
        Ok(())
    })?;
    let c = Connection::new(hub.storage());
    assert_eq!(root(&c)?.read()?.dict.read()?.get("x"), Some(&3));
    Ok(())
}

/// Both wrote 9: by default a conflict (two read-modify-writes, one would
/// be lost); `per_key::Same` is the opt-in for values where writing twice
/// means writing once (docs/COLLECTIONS.md, the upgrade note).
#[test]
fn dict_same_change_on_both_sides_conflicts_unless_same() -> Result<()> {
    let (_hub, a, b) = setup()?;
    let (da, db) = (
        root(&a)?.read()?.dict.clone(),
        root(&b)?.read()?.dict.clone(),
    );
    da.write()?.insert("x".into(), 9);
    db.write()?.insert("x".into(), 9);
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    let hub = Hub::new(MemoryStorage::new());
    let (a, b) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    let da: PRef<PersistentDict<String, i64, per_key::Same>> = a.root()?;
    let db: PRef<PersistentDict<String, i64, per_key::Same>> = b.root()?;
    da.write()?.insert("x".into(), 9);
    db.write()?.insert("x".into(), 9);
    a.commit()?;
    b.commit()?;
    assert_eq!(db.read()?.get("x"), Some(&9));
    Ok(())
}

#[test]
fn set_additions_and_removals_from_both_sides_apply() -> Result<()> {
    let (hub, a, b) = setup()?;
    let (sa, sb) = (root(&a)?.read()?.set.clone(), root(&b)?.read()?.set.clone());
    sa.write()?.insert("p".into());
    sb.write()?.insert("q".into());
    sb.write()?.remove("r");
    a.commit()?;
    b.commit()?;
    let c = Connection::new(hub.storage());
    let got: Vec<String> = root(&c)?.read()?.set.read()?.iter().cloned().collect();
    assert_eq!(got, ["p", "q"]);
    Ok(())
}

#[test]
fn lists_conflict_as_in_durus() -> Result<()> {
    let (hub, a, b) = setup()?;
    let (la, lb) = (
        root(&a)?.read()?.list.clone(),
        root(&b)?.read()?.list.clone(),
    );
    la.write()?.push(1);
    lb.write()?.push(2);
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    b.transaction(3, |_| {
        lb.write()?.push(2);
        Ok(())
    })?;
    let c = Connection::new(hub.storage());
    assert_eq!(&root(&c)?.read()?.list.read()?[..], &[1, 2]);
    Ok(())
}

#[test]
fn btree_changes_to_different_keys_of_one_leaf_merge() -> Result<()> {
    let (hub, a, b) = setup()?;
    let (ta, tb) = (
        root(&a)?.read()?.tree.clone(),
        root(&b)?.read()?.tree.clone(),
    );
    ta.insert(5, "a".into())?;
    ta.remove(&10)?;
    tb.insert(15, "b".into())?;
    tb.insert(20, "changed".into())?;
    a.commit()?;
    b.commit()?;
    assert_eq!(b.merge_count(), 2, "the leaf and the tree's record");
    let c = Connection::new(hub.storage());
    let tc = root(&c)?.read()?.tree.clone();
    assert_eq!(tc.len()?, 21);
    assert_eq!(tc.get(&5)?.as_deref(), Some("a"));
    assert_eq!(tc.get(&10)?, None);
    assert_eq!(tc.get(&15)?.as_deref(), Some("b"));
    assert_eq!(tc.get(&20)?.as_deref(), Some("changed"));
    tc.verify()?;
    Ok(())
}

#[test]
fn btree_conflicts_follow_the_rules() -> Result<()> {
    // The same key added by both sides: the count cannot merge.
    let (hub, a, b) = setup()?;
    let (ta, tb) = (
        root(&a)?.read()?.tree.clone(),
        root(&b)?.read()?.tree.clone(),
    );
    ta.insert(5, "a".into())?;
    tb.insert(5, "a".into())?;
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    b.transaction(3, |_| tb.insert(5, "b".into()).map(drop))?;
    // The same key changed differently.
    ta.insert(30, "a".into())?;
    tb.insert(30, "b".into())?;
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    // A leaf that would overflow: 21 entries + 6 + 6.
    for k in 0..6 {
        ta.insert(1000 + k, String::new())?;
        tb.insert(2000 + k, String::new())?;
    }
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    // A split on one side, an insert on the other: the root changed.
    for k in 0..5 {
        ta.insert(3000 + k, String::new())?;
    }
    assert_eq!(ta.depth()?, 2);
    tb.insert(7, String::new())?;
    a.commit()?;
    assert!(is_conflict(b.commit()));
    b.abort()?;
    b.transaction(3, |_| tb.insert(7, String::new()).map(drop))?;
    let c = Connection::new(hub.storage());
    let tc = root(&c)?.read()?.tree.clone();
    tc.verify()?;
    assert_eq!(tc.len()?, 20 + 1 + 6 + 5 + 1);
    Ok(())
}

#[test]
fn btree_leaves_merge_under_a_shared_root() -> Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let a = Connection::new(hub.storage());
    let ta = collections_common::tree_of(&a)?;
    for k in 0..200u64 {
        ta.insert(k * 10, String::new())?;
    }
    a.commit()?;
    let b = Connection::new(hub.storage());
    let tb = collections_common::tree_of(&b)?;
    assert_eq!(tb.depth()?, 2);
    // Different leaves, and different keys of one leaf.
    ta.insert(11, "a".into())?;
    ta.insert(1501, "a".into())?;
    tb.insert(12, "b".into())?;
    tb.remove(&1990)?;
    a.commit()?;
    b.commit()?;
    let c = Connection::new(hub.storage());
    let tc = collections_common::tree_of(&c)?;
    tc.verify()?;
    assert_eq!(tc.len()?, 202);
    assert_eq!(tc.get(&12)?.as_deref(), Some("b"));
    assert_eq!(tc.get(&1501)?.as_deref(), Some("a"));
    Ok(())
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq)]
struct Profile {
    name: String,
    #[merge(union)]
    tags: PersistentSet<String>,
}

#[test]
fn embedded_collections_merge_with_union() -> Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let a = Connection::new(hub.storage());
    let pa: PRef<Profile> = a.root()?;
    let b = Connection::new(hub.storage());
    let pb: PRef<Profile> = b.root()?;
    pa.write()?.tags.insert("a".into());
    pb.write()?.tags.insert("b".into());
    a.commit()?;
    b.commit()?;
    assert_eq!(pb.read()?.tags.len(), 2);
    Ok(())
}
