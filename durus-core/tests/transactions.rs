//! A commit happens whole or not at all, on every path.
//!
//! Each test walks one path on which a write used to be lost, applied
//! twice, or left a BTree corrupt: guards held across `commit`, `abort`
//! and `sync`, a storage that fails half-way, merge functions that fail,
//! panic or make objects, a pack under a conflict. Two clients apply their
//! changes first and commit after, so that their transactions overlap.

mod support;

use durus_core::storage::FileStorage;
use durus_core::{
    BTree, Connection, Error, Hub, MemoryStorage, MergeConflict, PRef, Persistent, Status,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use support::faults::{Faults, Faulty};

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
struct Plain {
    value: i64,
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
struct Account {
    #[merge(sum)]
    balance: i64,
}

/// A merge function that makes a new persistent object.
fn make_object(
    ours: &Option<PRef<Plain>>,
    stored: &Option<PRef<Plain>>,
    initial: &Option<PRef<Plain>>,
) -> Result<Option<PRef<Plain>>, MergeConflict> {
    if ours == initial {
        return Ok(stored.clone());
    }
    Ok(Some(PRef::new(Plain { value: 99 })))
}

/// A merge function that loads another object.
fn load_object(
    ours: &Option<PRef<Plain>>,
    stored: &Option<PRef<Plain>>,
    initial: &Option<PRef<Plain>>,
) -> Result<Option<PRef<Plain>>, MergeConflict> {
    if ours == initial {
        return Ok(stored.clone());
    }
    if let Some(p) = initial {
        p.read()
            .map_err(|e| MergeConflict::new("loaded", e.to_string()))?;
    }
    Ok(ours.clone())
}

/// A merge function that panics.
fn panics(ours: &i64, stored: &i64, initial: &i64) -> Result<i64, MergeConflict> {
    assert_eq!(
        ours, initial,
        "a merge function that panics (expected by the test)"
    );
    Ok(*stored)
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
struct Odd {
    #[merge(sum)]
    hits: i64,
    #[merge(with = make_object)]
    made: Option<PRef<Plain>>,
    #[merge(with = load_object)]
    loaded: Option<PRef<Plain>>,
    #[merge(with = panics)]
    touchy: i64,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    x: Option<PRef<Plain>>,
    y: Option<PRef<Plain>>,
    acct: Option<PRef<Account>>,
    odd: Option<PRef<Odd>>,
    tree: BTree<u32, u32>,
}

struct World {
    hub: Hub,
    faults: Arc<Faults>,
}

impl World {
    fn new() -> World {
        let (storage, faults) = Faulty::new(MemoryStorage::new());
        let hub = Hub::new(storage);
        let conn = hub.connection();
        let root: PRef<Root> = conn.root().expect("root");
        {
            let mut r = root.write().expect("write");
            r.x = Some(PRef::new(Plain::default()));
            r.y = Some(PRef::new(Plain::default()));
            r.acct = Some(PRef::new(Account::default()));
            r.odd = Some(PRef::new(Odd::default()));
            r.odd.as_ref().expect("odd").write().expect("odd").loaded =
                Some(PRef::new(Plain::default()));
        }
        conn.commit().expect("commit");
        World { hub, faults }
    }

    fn conn(&self) -> Connection {
        self.hub.connection()
    }
}

trait HubExt {
    fn connection(&self) -> Connection;
}

impl HubExt for Hub {
    fn connection(&self) -> Connection {
        Connection::new(self.storage())
    }
}

struct Handles {
    root: PRef<Root>,
    x: PRef<Plain>,
    y: PRef<Plain>,
    acct: PRef<Account>,
    odd: PRef<Odd>,
    tree: BTree<u32, u32>,
}

fn handles(conn: &Connection) -> Handles {
    let root: PRef<Root> = conn.root().expect("root");
    let r = root.read().expect("read root");
    let h = Handles {
        x: r.x.clone().expect("x"),
        y: r.y.clone().expect("y"),
        acct: r.acct.clone().expect("acct"),
        odd: r.odd.clone().expect("odd"),
        tree: r.tree.clone(),
        root: root.clone(),
    };
    drop(r);
    h
}

/// What a fresh client reads.
fn stored(world: &World) -> (i64, i64, i64) {
    let conn = world.conn();
    let h = handles(&conn);
    let x = h.x.read().expect("x").value;
    let y = h.y.read().expect("y").value;
    let balance = h.acct.read().expect("acct").balance;
    (x, y, balance)
}

// 1. A BTree merge never puts a key in the wrong leaf.

/// Keys 0, 10, ..., 310: two leaves (0..140 and 160..310) under a root
/// holding 150. Client A loads the whole tree in a transaction of its own,
/// so that its later view is older than B's insert of 155.
fn two_leaf_tree(world: &World) -> (Connection, Connection, BTree<u32, u32>, BTree<u32, u32>) {
    let setup = world.conn();
    let tree = handles(&setup).tree;
    for k in (0..32).map(|i| i * 10) {
        tree.insert(k, k).expect("insert");
    }
    setup.commit().expect("commit");
    assert_eq!(tree.depth().expect("depth"), 2);
    let (a, b) = (world.conn(), world.conn());
    let (tree_a, tree_b) = (handles(&a).tree, handles(&b).tree);
    assert_eq!(tree_a.iter().count(), 32);
    a.commit().expect("a's read-only transaction");
    tree_b.insert(155, 155).expect("insert");
    b.commit().expect("b inserts 155");
    (a, b, tree_a, tree_b)
}

fn check_tree_after(world: &World, a: &Connection, tree_a: &BTree<u32, u32>, removed: u32) {
    match a.commit() {
        Err(e) if e.is_conflict() => {}
        other => panic!("a leaf whose range changed must not merge: {other:?}"),
    }
    a.abort().expect("abort");
    tree_a.remove(&removed).expect("remove again");
    a.commit().expect("the retry commits");
    let conn = world.conn();
    let tree = handles(&conn).tree;
    tree.verify().expect("the tree verifies");
    assert_eq!(tree.len().expect("len"), 32);
    assert_eq!(tree.get(&155).expect("get"), Some(155));
    assert_eq!(tree.get(&removed).expect("get"), None);
    let keys: Vec<u32> = tree.keys().map(|k| k.expect("key")).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 32);
}

#[test]
fn btree_borrow_from_a_sibling_does_not_merge_a_key_into_the_wrong_leaf() {
    let world = World::new();
    let (a, _b, tree_a, _) = two_leaf_tree(&world);
    // Removing 0 tops the left leaf up from its right sibling through the root.
    tree_a.remove(&0).expect("remove 0");
    check_tree_after(&world, &a, &tree_a, 0);
}

#[test]
fn btree_separator_replaced_does_not_merge_a_key_into_the_wrong_leaf() {
    let world = World::new();
    let (a, _b, tree_a, _) = two_leaf_tree(&world);
    // Removing the separator 150 replaces it with 160 from the right leaf.
    tree_a.remove(&150).expect("remove 150");
    check_tree_after(&world, &a, &tree_a, 150);
}

#[test]
fn btree_concurrent_inserts_in_one_leaf_still_merge() {
    let world = World::new();
    let (a, _b, tree_a, _) = two_leaf_tree(&world);
    tree_a.insert(305, 305).expect("insert");
    a.commit().expect("different keys of one leaf merge");
    let conn = world.conn();
    let tree = handles(&conn).tree;
    tree.verify().expect("verify");
    assert_eq!(tree.len().expect("len"), 34);
    assert_eq!(tree.get(&155).expect("get"), Some(155));
    assert_eq!(tree.get(&305).expect("get"), Some(305));
}

// 2. A read guard held across abort() does not drop an invalidation.

#[test]
fn a_guard_held_across_abort_keeps_the_invalidation() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    let guard = ha.x.read().expect("read");
    hb.x.write().expect("write").value += 1;
    b.commit().expect("b adds 1");
    a.abort().expect("abort does not stop at a guard");
    drop(guard);
    assert_eq!(ha.x.status(), Status::Ghost);
    ha.x.write().expect("write").value += 10;
    a.commit().expect("a adds 10");
    assert_eq!(stored(&world).0, 11, "b's acknowledged +1 is kept");
}

#[test]
fn a_guard_held_across_sync_and_commit_keeps_every_invalidation() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    ha.y.read().expect("read y");
    a.commit().expect("a's read-only transaction");
    let guard = ha.x.read().expect("read x");
    // x and y both change; a holds a guard on x, from this transaction.
    hb.x.write().expect("write").value += 1;
    hb.y.write().expect("write").value += 2;
    b.commit().expect("b commits");
    drop(guard);
    a.commit()
        .expect("a's read-only commit takes the invalidations");
    let g2 = ha.x.read().expect("read x again");
    assert_eq!(g2.value, 1);
    a.commit()
        .expect("a's read-only transaction ends, the guard lives on");
    hb.x.write().expect("write").value += 1;
    hb.y.write().expect("write").value += 2;
    b.commit().expect("b commits again");
    // a's guard on x is from an earlier transaction: y after it still
    // becomes a ghost, and x is loaded afresh once the guard is gone.
    ha.acct.write().expect("write").balance += 1;
    a.commit().expect("a commits");
    drop(g2);
    assert_eq!(ha.x.read().expect("x").value, 2);
    assert_eq!(ha.y.read().expect("y").value, 4);
}

// 3. A guard held across a merged commit: refused before anything is stored.

#[test]
fn a_guard_on_a_merging_object_refuses_the_commit_before_anything_is_stored() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    ha.acct.write().expect("write").balance += 1;
    hb.acct.write().expect("write").balance += 10;
    b.commit().expect("b adds 10");
    let guard = ha.acct.read().expect("read");
    match a.commit() {
        Err(Error::Borrowed(oid)) => assert_eq!(oid, ha.acct.oid()),
        other => panic!("expected Borrowed, got {other:?}"),
    }
    assert_eq!(stored(&world).2, 10, "nothing was stored");
    assert!(
        !a.needs_abort(),
        "nothing happened: the transaction goes on"
    );
    drop(guard);
    a.commit().expect("the commit merges");
    assert_eq!(ha.acct.read().expect("read").balance, 11);
    assert_eq!(stored(&world).2, 11, "both deposits, once each");
    assert_eq!(a.merge_count(), 1);
}

#[test]
fn transaction_retries_are_never_applied_twice() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    hb.acct.write().expect("write").balance += 10;
    b.commit().expect("b adds 10");
    let mut runs = 0;
    a.transaction(5, |_| {
        runs += 1;
        ha.acct.write()?.balance += 1;
        Ok(())
    })
    .expect("transaction");
    assert_eq!(runs, 1);
    assert_eq!(stored(&world).2, 11);
}

// 4. A commit retried after a failed `end` does not write the unmerged state.

#[test]
fn a_failed_end_leaves_nothing_and_the_retry_needs_an_abort() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    ha.acct.write().expect("write").balance += 1;
    ha.x.write().expect("write").value = 5;
    hb.acct.write().expect("write").balance += 10;
    b.commit().expect("b adds 10");
    Faults::arm(&world.faults.end);
    match a.commit() {
        Err(Error::Storage(_)) => {}
        other => panic!("expected the injected failure, got {other:?}"),
    }
    assert_eq!(stored(&world), (0, 0, 10), "nothing of a's was stored");
    assert!(a.needs_abort());
    assert!(matches!(a.commit(), Err(Error::NeedsAbort)));
    assert!(matches!(ha.acct.read(), Err(Error::NeedsAbort)));
    assert!(matches!(a.sync(), Err(Error::NeedsAbort)));
    assert_eq!(stored(&world), (0, 0, 10), "still nothing");
    a.abort().expect("abort");
    ha.acct.write().expect("write").balance += 1;
    ha.x.write().expect("write").value = 5;
    a.commit().expect("the retry commits");
    assert_eq!(stored(&world), (5, 0, 11));
}

#[test]
fn a_failed_fsync_is_reported_as_unknown_and_not_retried() {
    let world = World::new();
    let a = world.conn();
    let ha = handles(&a);
    Faults::arm(&world.faults.durability);
    let mut runs = 0;
    let out = a.transaction(5, |_| {
        runs += 1;
        ha.acct.write()?.balance += 1;
        Ok(())
    });
    assert!(matches!(out, Err(Error::OutcomeUnknown(_))), "{out:?}");
    assert_eq!(runs, 1, "an unknown outcome is not retried");
    // This storage did store it (the fsync "failed" after the write).
    assert_eq!(stored(&world).2, 1);
}

#[test]
fn a_failed_sync_at_abort_still_drops_the_changes() {
    let world = World::new();
    let a = world.conn();
    let ha = handles(&a);
    ha.x.write().expect("write").value = 3;
    Faults::arm(&world.faults.sync);
    assert!(a.abort().is_err());
    assert!(!a.needs_abort());
    assert_eq!(ha.x.read().expect("read").value, 0);
    a.commit().expect("nothing to commit");
    assert_eq!(stored(&world).0, 0);
}

// 5. Merge functions that make or load objects, or panic.

fn odd_conflict(world: &World, change: impl Fn(&mut Odd)) {
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    {
        let mut w = ha.odd.write().expect("write");
        w.hits += 1;
        change(&mut w);
    }
    hb.odd.write().expect("write").hits += 10;
    b.commit().expect("b commits");
    match a.commit() {
        Err(e) if e.is_conflict() => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(a.needs_abort());
    assert!(matches!(a.commit(), Err(Error::NeedsAbort)));
    a.abort().expect("abort");
    assert_eq!(ha.odd.read().expect("read").hits, 10, "a's change is gone");
    // The hub goes on serving.
    ha.odd.write().expect("write").hits += 1;
    a.commit().expect("commit");
    hb.odd.write().expect("write").hits += 100;
    b.commit().expect("the other client commits");
    let c = world.conn();
    assert_eq!(handles(&c).odd.read().expect("read").hits, 111);
}

#[test]
fn a_merge_function_that_makes_an_object_is_a_conflict() {
    let world = World::new();
    odd_conflict(&world, |o| o.made = Some(PRef::new(Plain { value: 1 })));
}

#[test]
fn a_merge_function_that_loads_an_object_is_a_conflict() {
    let world = World::new();
    odd_conflict(&world, |o| o.loaded = None);
}

#[test]
fn a_merge_function_that_panics_is_a_conflict() {
    let world = World::new();
    odd_conflict(&world, |o| o.touchy = 1);
}

// 6. sync() in mid-transaction keeps Durus's rule.

#[test]
fn sync_after_a_stale_read_is_a_conflict() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    let seen = ha.x.read().expect("read").value;
    hb.x.write().expect("write").value = 7;
    b.commit().expect("b commits");
    match a.sync() {
        Err(e) if e.is_conflict() => {}
        other => panic!("a read object changed: expected a conflict, got {other:?}"),
    }
    assert!(matches!(ha.y.write(), Err(Error::NeedsAbort)));
    assert!(matches!(a.commit(), Err(Error::NeedsAbort)));
    a.abort().expect("abort");
    ha.y.write().expect("write").value = ha.x.read().expect("read").value + 1;
    a.commit().expect("commit");
    assert_eq!(seen, 0);
    assert_eq!(stored(&world), (7, 8, 0));
}

#[test]
fn sync_never_turns_a_changed_object_into_a_ghost() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    ha.x.write().expect("write").value = 42;
    hb.x.write().expect("write").value = 7;
    b.commit().expect("b commits");
    assert!(a.sync().expect_err("conflict").is_conflict());
    assert_eq!(
        ha.x.status(),
        Status::Unsaved,
        "the change is not dropped silently"
    );
    assert!(matches!(a.commit(), Err(Error::NeedsAbort)));
    assert_eq!(stored(&world).0, 7);
    a.abort().expect("abort");
    assert_eq!(ha.x.read().expect("read").value, 7);
}

#[test]
fn sync_without_a_conflict_ghosts_what_was_not_used() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    ha.y.read().expect("read");
    a.commit().expect("read-only");
    ha.x.write().expect("write").value = 1;
    hb.y.write().expect("write").value = 2;
    b.commit().expect("b");
    a.sync().expect("y was not used in this transaction");
    assert_eq!(ha.y.status(), Status::Ghost);
    ha.y.read().expect("read");
    a.commit().expect("commit");
    assert_eq!(stored(&world), (1, 2, 0));
}

// 7. A guard held across abort() of a changed object.

#[test]
fn a_guard_held_across_abort_of_a_changed_object_drops_the_change() {
    let world = World::new();
    let a = world.conn();
    let ha = handles(&a);
    ha.x.write().expect("write").value = 5;
    let guard = ha.x.read().expect("read");
    a.abort().expect("abort");
    assert_eq!(guard.value, 5, "the guard still shows what it borrowed");
    assert!(
        matches!(ha.x.read(), Err(Error::Borrowed(_))),
        "the aborted state is not handed out again"
    );
    drop(guard);
    assert_eq!(ha.x.read().expect("read").value, 0, "reloaded");
    ha.x.write().expect("write").value = 6;
    a.commit().expect("commit");
    assert_eq!(stored(&world).0, 6, "a later write is committed");
}

#[test]
fn a_write_guard_held_across_commit_refuses_it() {
    let world = World::new();
    let a = world.conn();
    let ha = handles(&a);
    let mut guard = ha.x.write().expect("write");
    guard.value = 5;
    assert!(matches!(a.commit(), Err(Error::Borrowed(_))));
    assert!(!a.needs_abort());
    drop(guard);
    a.commit().expect("commit");
    assert_eq!(stored(&world).0, 5);
}

// Lower: a pack under a conflict; the first root commit failing.

#[test]
fn a_conflicting_object_removed_by_a_pack_is_a_conflict() {
    let world = World::new();
    let (a, b) = (world.conn(), world.conn());
    let (ha, hb) = (handles(&a), handles(&b));
    a.commit().expect("a's read of the root ends");
    ha.acct.write().expect("write").balance += 1;
    hb.root.write().expect("write").acct = None;
    b.commit().expect("b unlinks the account");
    b.pack().expect("pack removes it");
    match a.commit() {
        Err(e) if e.is_conflict() => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    a.abort().expect("abort");
    let c = world.conn();
    let root: PRef<Root> = c.root().expect("root");
    assert!(root.read().expect("read").acct.is_none());
}

#[test]
fn a_failed_first_root_commit_can_be_retried() {
    let dir = support::Scratch::new("root-retry");
    let file = FileStorage::open(dir.path("root.durus")).expect("open");
    let (storage, faults) = Faulty::new(file);
    let conn = Connection::new(storage);
    Faults::arm(&faults.end);
    assert!(conn.root::<Root>().is_err());
    conn.abort().expect("abort");
    let root: PRef<Root> = conn.root().expect("the root is made on the retry");
    assert_eq!(root.oid(), Some(durus_core::Oid::ROOT));
    drop(conn);
    let again = Connection::open(dir.path("root.durus")).expect("reopen");
    let root: PRef<Root> = again.root().expect("root");
    assert!(root.read().expect("read").x.is_none());
}

/// A value whose encoding panics, to leave a commit half-way.
#[derive(Persistent, Deserialize, Default)]
struct Explosive {
    fuse: bool,
}

impl Serialize for Explosive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(!self.fuse, "an encoding that panics (expected by the test)");
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Explosive", 1)?;
        st.serialize_field("fuse", &self.fuse)?;
        st.end()
    }
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Holder {
    new: Option<PRef<Plain>>,
    bomb: Option<PRef<Explosive>>,
}

#[test]
fn a_panic_half_way_through_a_commit_leaves_a_transaction_to_abort() {
    let conn = Connection::new(MemoryStorage::new());
    let root: PRef<Holder> = conn.root().expect("root");
    root.write().expect("write").bomb = Some(PRef::new(Explosive { fuse: false }));
    conn.commit().expect("commit");
    let fresh = PRef::new(Plain { value: 1 });
    {
        let mut r = root.write().expect("write");
        r.new = Some(fresh.clone());
        r.bomb.as_ref().expect("bomb").write().expect("write").fuse = true;
    }
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| conn.commit()));
    assert!(caught.is_err(), "the encoding panicked");
    assert!(conn.needs_abort());
    assert!(matches!(conn.commit(), Err(Error::NeedsAbort)));
    conn.abort().expect("abort");
    assert_eq!(
        fresh.oid(),
        None,
        "the new object lost the oid it was given"
    );
    assert!(root.read().expect("read").new.is_none());
    root.write().expect("write").new = Some(fresh.clone());
    conn.commit().expect("commit");
    assert!(fresh.oid().is_some());
    let oid = fresh.oid().expect("oid");
    assert_eq!(
        conn.get::<Plain>(oid)
            .expect("get")
            .read()
            .expect("r")
            .value,
        1
    );
}

#[test]
fn a_write_guard_on_a_new_object_refuses_the_commit_and_nothing_happens() {
    let world = World::new();
    let a = world.conn();
    let ha = handles(&a);
    let fresh = PRef::new(Plain { value: 3 });
    ha.root.write().expect("write").x = Some(fresh.clone());
    let guard = fresh.write().expect("write");
    assert!(matches!(a.commit(), Err(Error::Borrowed(_))));
    assert!(
        !a.needs_abort(),
        "nothing happened: the transaction goes on"
    );
    assert_eq!(
        fresh.oid(),
        None,
        "the new object lost the oid it was given"
    );
    drop(guard);
    a.commit().expect("commit");
    assert!(fresh.oid().is_some());
    assert_eq!(stored(&world).0, 3);
}

/// `Connection::transaction` waits between attempts as `Database` does
/// (1 ms doubling, jittered): six attempts take at least 1+2+4+8+16 ms.
#[test]
fn connection_transaction_backs_off_between_conflicts() {
    let conn = durus_core::Connection::new(durus_core::MemoryStorage::new());
    let mut calls = 0;
    let started = std::time::Instant::now();
    let out: durus_core::Result<()> = conn.transaction(6, |_| {
        calls += 1;
        Err(durus_core::Error::Conflict(durus_core::ConflictError {
            kind: durus_core::ConflictKind::Write,
            oids: vec![durus_core::Oid(1)],
            details: Vec::new(),
        }))
    });
    assert!(out.expect_err("every attempt conflicts").is_conflict());
    assert_eq!(calls, 6);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(31),
        "{:?}",
        started.elapsed()
    );
}
