//! BTree figures for the shared workloads W1 (insert) and W2 (cold full
//! traversal), with Item(n, S(n)) values as `durus bench` makes them (see
//! `docs/PERFORMANCE.md`).
//!
//! ```text
//! cargo run --release -p durus-cli --example btree_bench -- [N] [memory|file|file-fsync] [DIR]
//! ```
//!
//! N defaults to 1 000 000; the commit batch is 1 000 and the cache 10 000
//! objects while inserting, N + 10 000 while reading. The storage is a
//! `MemoryStorage` or a `FileStorage` in DIR (default: the temporary
//! directory; `file` does not fsync, like Python Durus, `file-fsync` does
//! on every commit), behind a hub; a counting adapter reports the records
//! and bytes that commits write. Timed regions exclude building the
//! strings. For a file, the traversal runs on the file opened again.

use durus_cli::bench::data::item_string;
use durus_core::storage::{Counting, FileOptions, FsyncPolicy, Storage};
use durus_core::{BTree, Connection, FileStorage, Hub, MemoryStorage, PRef, Persistent, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "bench.Parent")]
struct Parent {
    name: String,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "bench.Item")]
struct Item {
    n: u64,
    s: String,
    parent: PRef<Parent>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "bench.Root")]
struct Root {
    parent: Option<PRef<Parent>>,
    items: BTree<u64, PRef<Item>>,
}

fn main() -> Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mode = std::env::args().nth(2).unwrap_or_else(|| "memory".into());
    let dir = std::env::args()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("btree-bench-{}.durus", std::process::id()));
    let policy = match mode.as_str() {
        "memory" => None,
        "file" => Some(FsyncPolicy::Never),
        "file-fsync" => Some(FsyncPolicy::Always),
        other => {
            eprintln!("unknown storage {other}: memory, file or file-fsync");
            std::process::exit(2);
        }
    };
    let open = || -> Result<Box<dyn Storage>> {
        Ok(match policy {
            None => Box::new(MemoryStorage::new()),
            Some(p) => Box::new(FileStorage::open_with(&path, FileOptions::new().fsync(p))?),
        })
    };
    let batch = 1_000;
    let (storage, counts) = Counting::new(open()?);
    let mut hub = Hub::new(storage);
    println!("storage: {mode}");
    let strings: Vec<String> = (0..n).map(item_string).collect();

    // W1: insert N items, committing every 1 000.
    let conn = Connection::with_cache_size(Box::new(hub.storage()), 10_000);
    let root: PRef<Root> = conn.root()?;
    let parent = PRef::new(Parent {
        name: "parent".into(),
    });
    root.write()?.parent = Some(parent.clone());
    let tree = root.read()?.items.clone();
    conn.commit()?;
    let before = counts.total();
    let start = Instant::now();
    for (i, s) in strings.into_iter().enumerate() {
        let i = i as u64;
        let item = PRef::new(Item {
            n: i,
            s,
            parent: parent.clone(),
        });
        tree.insert(i, item)?;
        if (i + 1).is_multiple_of(batch) {
            conn.commit()?;
        }
    }
    conn.commit()?;
    let insert_secs = start.elapsed().as_secs_f64();
    let written = counts.total().records - before.records;
    let written_bytes = counts.total().bytes - before.bytes;
    let depth = tree.depth()?;
    println!(
        "W1 insert: {n} entries in {insert_secs:.2} s = {:.0} entries/s; \
         {written} records, {written_bytes} bytes written = {:.1} bytes/insert; depth {depth}",
        n as f64 / insert_secs,
        written_bytes as f64 / n as f64
    );

    // One more insert into the full tree.
    let before = counts.total();
    let item = PRef::new(Item {
        n,
        s: item_string(n),
        parent: parent.clone(),
    });
    tree.insert(n, item)?;
    conn.commit()?;
    println!(
        "one insert into the full tree: {} records, {} bytes",
        counts.total().records - before.records,
        counts.total().bytes - before.bytes
    );
    drop(tree);
    drop(root);
    drop(parent);
    drop(conn);
    if policy.is_some() {
        hub.close()?;
        drop(hub);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let start = Instant::now();
        hub = Hub::new(open()?);
        println!(
            "file: {size} bytes = {:.0} bytes/entry; opened again in {:.3} s",
            size as f64 / n as f64,
            start.elapsed().as_secs_f64()
        );
    }

    // W2: a cold full traversal from a new connection (its cache empty).
    let conn = Connection::with_cache_size(Box::new(hub.storage()), n as usize + 10_000);
    let start = Instant::now();
    let root: PRef<Root> = conn.root()?;
    let tree = root.read()?.items.clone();
    let shared = root.read()?.parent.clone();
    let (mut count, mut sum, mut same_parent) = (0u64, 0u64, true);
    for entry in tree.iter() {
        let (_, item) = entry?;
        let item = item.read()?;
        count += 1;
        sum += item.n;
        same_parent &= shared.as_ref().is_some_and(|p| p.ptr_eq(&item.parent));
    }
    let read_secs = start.elapsed().as_secs_f64();
    let expect = n + 1;
    assert!(count == expect && sum == expect * (expect - 1) / 2 && same_parent);
    println!(
        "W2 cold traversal: {count} items in {read_secs:.2} s = {:.0} items/s ({} loads)",
        count as f64 / read_secs,
        conn.loads_from_storage()
    );

    // A cold range scan of 1 000 entries in the middle.
    drop(tree);
    drop(root);
    drop(shared);
    drop(conn);
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root()?;
    let tree = root.read()?.items.clone();
    // Not timed: the first allocations after a million objects were freed
    // pay for the allocator's consolidation (glibc), whatever the work.
    tree.first()?;
    for from in [n / 2, n / 4, n / 8 * 7] {
        let before = conn.loads_from_storage();
        let start = Instant::now();
        let mut got = 0;
        for entry in tree.range(from..from + 1_000) {
            let (_, item) = entry?;
            got += usize::from(item.read()?.n >= from);
        }
        println!(
            "cold range of {got} entries from {from}: {:.2} ms, {} loads",
            start.elapsed().as_secs_f64() * 1e3,
            conn.loads_from_storage() - before
        );
    }
    drop(tree);
    drop(root);
    drop(conn);
    hub.close()?;
    if policy.is_some() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}
