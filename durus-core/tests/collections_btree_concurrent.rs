//! Eight threads, one connection each over one hub, insert different keys
//! into one small BTree: what the merge rules promise to merge never
//! reaches the application as a conflict, and no insert is lost.

mod collections_common;
mod support;

use collections_common::tree_of;
use durus_core::storage::FileStorage;
use durus_core::{BTree, Connection, Error, Hub, MemoryStorage, Result};
use std::sync::{Arc, Barrier};
use std::thread;

const THREADS: u64 = 8;

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    conflicts: u64,
    merges: u64,
}

/// Inserts `k` and commits, retrying (abort first) on conflicts; counts them.
fn insert_committed(
    conn: &Connection,
    tree: &BTree<u64, String>,
    k: u64,
    conflicts: &mut u64,
) -> Result<()> {
    for _ in 0..200 {
        let done = tree
            .insert(k, format!("value {k}"))
            .and_then(|_| conn.commit());
        match done {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() => {
                *conflicts += 1;
                conn.abort()?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::NeedsAbort)
}

#[test]
fn eight_threads_insert_different_keys_into_one_small_tree() -> Result<()> {
    eight_threads(Hub::new(MemoryStorage::new()))
}

#[test]
fn eight_threads_insert_into_one_small_tree_on_file_storage() -> Result<()> {
    let dir = support::Scratch::new("btree-threads");
    eight_threads(Hub::new(FileStorage::open(dir.path("threads.durus"))?))
}

fn eight_threads(hub: Hub) -> Result<()> {
    {
        let conn = Connection::new(hub.storage());
        tree_of(&conn)?;
        conn.commit()?;
    }
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let per_thread = 60;
    let results: Vec<Result<(Stats, Stats)>> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let hub = hub.clone();
                let barrier = barrier.clone();
                s.spawn(move || -> Result<(Stats, Stats)> {
                    let conn = Connection::new(hub.storage());
                    let tree = tree_of(&conn)?;
                    // Phase 1: rounds in which every thread inserts a key
                    // into the one root leaf and then all commit at once.
                    // 24 keys fit in a leaf: every commit must merge.
                    let mut first = Stats::default();
                    let mut failure = None;
                    for round in 0..3 {
                        let inserted = tree.insert(round * THREADS + t, format!("{t}"));
                        barrier.wait();
                        match inserted.and_then(|_| conn.commit()) {
                            Ok(()) => {}
                            Err(e) => {
                                first.conflicts += 1;
                                failure.get_or_insert(e);
                                conn.abort()?;
                            }
                        }
                        barrier.wait();
                    }
                    first.merges = conn.merge_count();
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    // Phase 2: free running, interleaved ascending keys:
                    // leaves fill and split, and splits are conflicts.
                    let mut second = Stats::default();
                    for i in 0..per_thread {
                        insert_committed(
                            &conn,
                            &tree,
                            1_000 + i * THREADS + t,
                            &mut second.conflicts,
                        )?;
                    }
                    second.merges = conn.merge_count() - first.merges;
                    Ok((first, second))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(Error::NeedsAbort)))
            .collect()
    });
    let mut first = Stats::default();
    let mut second = Stats::default();
    for r in results {
        let (a, b) = r?;
        first.conflicts += a.conflicts;
        first.merges += a.merges;
        second.conflicts += b.conflicts;
        second.merges += b.merges;
    }
    assert_eq!(
        first.conflicts, 0,
        "inserts of different keys into one leaf merge"
    );
    // Every round, each commit after the first merges the leaf and the
    // tree's record (and so may the first, when its copy is from a
    // previous round).
    assert!(
        first.merges >= 3 * (THREADS - 1) * 2,
        "{} merges",
        first.merges
    );

    let conn = Connection::new(hub.storage());
    let tree = tree_of(&conn)?;
    let nodes = tree.verify()?;
    let total = 3 * THREADS + per_thread * THREADS;
    assert_eq!(tree.len()?, total);
    for t in 0..THREADS {
        for round in 0..3 {
            assert!(tree.contains_key(&(round * THREADS + t))?);
        }
        for i in 0..per_thread {
            assert!(tree.contains_key(&(1_000 + i * THREADS + t))?);
        }
    }
    // A conflict needs a split (or a leaf that would overflow) within the
    // window of another thread's transaction: each split or overflow makes
    // at most the other seven threads retry (about 8 per node is typical
    // on a file with fsync, where windows are long). How many commits
    // overlap, and so merge, depends on the scheduler.
    assert!(
        second.conflicts <= 2 * (THREADS - 1) * nodes,
        "{} conflicts for {nodes} nodes",
        second.conflicts
    );
    println!(
        "phase 2: {} commits, {} merges, {} conflicts, {nodes} nodes",
        per_thread * THREADS,
        second.merges,
        second.conflicts
    );
    Ok(())
}
