//! One change to a big BTree writes a handful of records, never the map.

mod collections_common;
mod support;

use collections_common::Rng;
use durus_core::storage::Counting;
use durus_core::storage::FileStorage;
use durus_core::{BTree, Connection, MemoryStorage, PRef, Persistent, Result};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    tree: BTree<u64, u64>,
}

/// The size of the map.
const N: u64 = 1_000_000;

#[test]
fn one_insert_writes_a_handful_of_records() -> Result<()> {
    let (storage, counts) = Counting::new(MemoryStorage::new());
    let conn = Connection::new(storage);
    let root: PRef<Root> = conn.root()?;
    let tree = root.read()?.tree.clone();
    // Even keys, in a scrambled order so that nodes fill like a real index.
    let mut rng = Rng::new(5);
    let mut keys: Vec<u64> = (0..N).map(|k| k * 2).collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for batch in keys.chunks(50_000) {
        for k in batch {
            tree.insert(*k, *k)?;
        }
        conn.commit()?;
    }
    assert_eq!(tree.len()?, N);
    let nodes = tree.verify()?;
    let depth = tree.depth()? as u64;
    let all_records = counts.total().records;
    assert!(nodes > 40_000, "{nodes} nodes");

    // Single inserts of new (odd) keys: each commit writes the leaf and the
    // tree's record, plus three nodes per split.
    let mut worst = 0;
    let mut records = 0;
    let mut bytes = 0;
    let commits = 300;
    for i in 0..commits {
        let k = rng.below(2 * N) | 1;
        tree.insert(k, i)?;
        conn.commit()?;
        let last = counts.last();
        let (r, b) = (last.records, last.bytes);
        worst = worst.max(r);
        records += r;
        bytes += b;
    }
    assert!(
        worst <= 2 + 3 * depth,
        "worst {worst} records for one insert"
    );
    assert!(
        records <= commits * 3,
        "{records} records for {commits} inserts"
    );
    let per_insert = bytes / commits;
    assert!(per_insert < 2_000, "{per_insert} bytes per insert");
    println!(
        "{N} entries, {nodes} nodes, depth {depth}, {all_records} records to build; \
         one insert: {} records and {per_insert} bytes on average, {worst} at most",
        records as f64 / commits as f64
    );

    // An update rewrites one leaf; a removal the leaf and the tree's record,
    // plus the nodes a top-up touches.
    tree.insert(4, 44)?;
    conn.commit()?;
    assert_eq!(counts.last().records, 1);
    tree.remove(&6)?;
    conn.commit()?;
    let r = counts.last().records;
    assert!(r <= 2 + 3 * depth, "{r} records for one removal");
    tree.verify()?;
    Ok(())
}

#[test]
fn one_insert_into_a_file_grows_it_by_a_leaf() -> Result<()> {
    let dir = support::Scratch::new("btree-records");
    let path = dir.path("records.durus");
    let n = 100_000u64;
    let (storage, counts) = Counting::new(FileStorage::open(&path)?);
    let conn = Connection::new(storage);
    let root: PRef<Root> = conn.root()?;
    let tree = root.read()?.tree.clone();
    let mut rng = Rng::new(9);
    let mut keys: Vec<u64> = (0..n).map(|k| k * 2).collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for batch in keys.chunks(20_000) {
        for k in batch {
            tree.insert(*k, *k)?;
        }
        conn.commit()?;
    }
    let depth = tree.depth()? as u64;
    let file_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = file_len();
    let commits = 100;
    let mut worst = 0;
    let mut added = std::collections::BTreeSet::new();
    for i in 0..commits {
        let k = rng.below(2 * n) | 1;
        added.insert(k);
        tree.insert(k, i)?;
        conn.commit()?;
        worst = worst.max(counts.last().records);
    }
    let grown = file_len() - before;
    assert!(
        worst <= 2 + 3 * depth,
        "worst {worst} records for one insert"
    );
    assert!(
        grown / commits < 2_000,
        "{} bytes per insert",
        grown / commits
    );
    println!(
        "file of {before} bytes for {n} entries; one insert adds {} bytes, {worst} records at most",
        grown / commits
    );
    drop(tree);
    drop(root);
    drop(conn);
    let conn = Connection::new(FileStorage::open(&path)?);
    let root: PRef<Root> = conn.root()?;
    let tree = root.read()?.tree.clone();
    assert_eq!(tree.len()?, n + added.len() as u64);
    tree.verify()?;
    Ok(())
}
