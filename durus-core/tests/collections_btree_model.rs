//! The BTree against `std::collections::BTreeMap`: random operations with
//! commits, aborts and cache shrinks, on every storage.

mod collections_common;
mod support;

use collections_common::{model_run, tree_of};
use durus_core::storage::FileStorage;
use durus_core::{Connection, Hub, MemoryStorage, Result};
use support::Scratch;

#[test]
fn btree_matches_a_btreemap_on_memory_storage() -> Result<()> {
    for seed in [1, 2, 3, 42] {
        let hub = Hub::new(MemoryStorage::new());
        let (max, last, _) = model_run(seed, 6_000, 3_000, &|| Connection::new(hub.storage()))?;
        assert!(max >= 3 && last < max, "depths {max} {last}");
    }
    Ok(())
}

#[test]
fn btree_matches_a_btreemap_in_a_tiny_key_space() -> Result<()> {
    // Few keys: the tree grows and shrinks through one and two levels often.
    for seed in [7, 8] {
        let hub = Hub::new(MemoryStorage::new());
        let (max, last, _) = model_run(seed, 4_000, 80, &|| Connection::new(hub.storage()))?;
        assert_eq!((max, last), (2, 1));
    }
    Ok(())
}

#[test]
fn btree_matches_a_btreemap_on_file_storage() -> Result<()> {
    let dir = Scratch::new("btree-model");
    for seed in [11, 12] {
        let path = dir.path(&format!("model-{seed}.durus"));
        let model = {
            let hub = Hub::new(FileStorage::open(&path)?);
            let (max, _, model) =
                model_run(seed, 6_000, 3_000, &|| Connection::new(hub.storage()))?;
            assert!(
                max >= 3,
                "seed {seed}: depth {max}, {} entries",
                model.len()
            );
            hub.close()?;
            model
        };
        // The file, opened again, holds the tree as last committed.
        let conn = Connection::open(&path)?;
        let tree = tree_of(&conn)?;
        tree.verify()?;
        assert_eq!(tree.len()?, model.len() as u64);
        let all: Vec<(u64, String)> = tree.iter().collect::<Result<_>>()?;
        assert!(all.into_iter().eq(model.into_iter()));
    }
    Ok(())
}

#[test]
fn iterating_a_prefix_loads_only_its_path() -> Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    {
        let conn = Connection::new(hub.storage());
        let tree = tree_of(&conn)?;
        for batch in 0..4u64 {
            for k in batch * 5_000..(batch + 1) * 5_000 {
                tree.insert(k, format!("value {k}"))?;
            }
            conn.commit()?;
        }
    }
    let conn = Connection::new(hub.storage());
    let tree = tree_of(&conn)?;
    // Ascending inserts leave nodes half full: 20 000 entries take 4 levels.
    let depth = 4;
    assert_eq!(tree.len()?, 20_000, "loads the tree's record only");
    let after_root = conn.loads_from_storage();

    let before = conn.loads_from_storage();
    let first: Vec<u64> = tree.keys().take(10).collect::<Result<_>>()?;
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    assert!(
        conn.loads_from_storage() - before <= depth,
        "a prefix loads one path"
    );

    let before = conn.loads_from_storage();
    let last: Vec<u64> = tree.keys().rev().take(10).collect::<Result<_>>()?;
    assert_eq!(last, (19_990..20_000).rev().collect::<Vec<_>>());
    assert!(conn.loads_from_storage() - before <= depth);

    let before = conn.loads_from_storage();
    let mid: Vec<u64> = tree
        .range(12_345..)
        .map(|e| e.map(|(k, _)| k))
        .take(500)
        .collect::<Result<_>>()?;
    assert_eq!(mid, (12_345..12_845).collect::<Vec<_>>());
    let loaded = conn.loads_from_storage() - before;
    // 500 entries span at most 500 / 15 + 2 leaves, plus their parents.
    assert!(loaded <= 45, "loaded {loaded} nodes for 500 entries");

    let before = conn.loads_from_storage();
    assert_eq!(tree.get(&7_777)?.as_deref(), Some("value 7777"));
    assert!(conn.loads_from_storage() - before <= depth);
    assert_eq!(tree.depth()?, depth as usize);
    assert_eq!(after_root, 2, "the root and the tree's record");
    let nodes = tree.verify()?;
    assert!(nodes > 600, "{nodes} nodes");
    Ok(())
}

#[test]
fn an_iterator_survives_commits_and_evictions() -> Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let tree = tree_of(&conn)?;
    for k in 0..3_000u64 {
        tree.insert(k, k.to_string())?;
    }
    conn.commit()?;
    let mut it = tree.iter();
    let mut back = tree.iter().rev();
    let mut seen = Vec::new();
    let mut seen_back = Vec::new();
    for round in 0..30 {
        for _ in 0..50 {
            if let Some(e) = it.next() {
                seen.push(e?.0);
            }
            if let Some(e) = back.next() {
                seen_back.push(e?.0);
            }
        }
        // The nodes on both paths become ghosts (the cache keeps what the
        // last transaction used, so two commits); the iterators reload them.
        conn.set_cache_size(1 + round % 3);
        conn.commit()?;
        conn.commit()?;
        assert!(conn.loaded_objects() <= 3);
    }
    assert!(conn.loads_from_storage() > 30 * 4, "paths were reloaded");
    assert_eq!(seen, (0..1_500).collect::<Vec<_>>());
    assert_eq!(seen_back, (1_500..3_000).rev().collect::<Vec<_>>());
    Ok(())
}
