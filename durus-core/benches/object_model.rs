//! Object-model figures in memory: create-and-commit rate, cold load rate,
//! and heap bytes per loaded object and per ghost.
//!
//! Run with `cargo bench -p durus-core --bench object_model`.

use durus_core::{Connection, Hub, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// Counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    buckets: Vec<PRef<Bucket>>,
    parent: Option<PRef<Parent>>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Parent {
    name: String,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Bucket {
    items: Vec<PRef<Item>>,
}

#[derive(Persistent, Serialize, Deserialize)]
struct Item {
    n: i64,
    s: String,
    parent: PRef<Parent>,
}

const N: usize = 100_000;
const PER_BUCKET: usize = 1_000;

fn main() -> durus_core::Result<()> {
    let strings: Vec<String> = (0..N).map(|i| format!("{i:0>100}")).collect();
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::with_cache_size(Box::new(hub.storage()), N + 10_000);
    let root: PRef<Root> = conn.root()?;
    let parent = PRef::new(Parent {
        name: "parent".into(),
    });
    root.write()?.parent = Some(parent.clone());
    conn.commit()?;

    let start = Instant::now();
    for b in 0..N / PER_BUCKET {
        let items = (b * PER_BUCKET..(b + 1) * PER_BUCKET)
            .map(|i| {
                PRef::new(Item {
                    n: i as i64,
                    s: strings[i].clone(),
                    parent: parent.clone(),
                })
            })
            .collect();
        root.write()?.buckets.push(PRef::new(Bucket { items }));
        conn.commit()?;
    }
    let create = start.elapsed().as_secs_f64();
    drop((root, parent, conn));

    let conn = Connection::with_cache_size(Box::new(hub.storage()), N + 10_000);
    let before_buckets = live();
    let root: PRef<Root> = conn.root()?;
    let buckets = root.read()?.buckets.clone();
    let mut items = Vec::with_capacity(N);
    for b in &buckets {
        items.extend(b.read()?.items.iter().cloned());
    }
    let items_vec_bytes = (items.capacity() * std::mem::size_of::<PRef<Item>>()) as isize;
    let with_ghosts = live();
    let start = Instant::now();
    let mut sum = 0i64;
    for it in &items {
        let item = it.read()?;
        sum += item.n;
        assert_eq!(item.s.len(), 100);
    }
    let load = start.elapsed().as_secs_f64();
    let loaded = live();
    assert_eq!(sum, (N as i64 - 1) * N as i64 / 2);

    // Bytes held by the item records' CBOR (for context).
    let ghost_bytes = (with_ghosts - before_buckets - items_vec_bytes) as f64 / N as f64;
    let loaded_bytes = (loaded - with_ghosts) as f64 / N as f64 + ghost_bytes;
    println!(
        "objects: {N} items of (i64, 100-byte string, reference), {} per commit",
        PER_BUCKET
    );
    println!(
        "create and commit: {:.0} objects/s ({create:.3} s)",
        N as f64 / create
    );
    println!(
        "cold load:         {:.0} objects/s ({load:.3} s)",
        N as f64 / load
    );
    println!("heap per ghost:    {ghost_bytes:.0} bytes (handle, header, cache entry; buckets' vectors included)");
    println!("heap per loaded:   {loaded_bytes:.0} bytes (ghost + state: i64, String of 100 bytes, reference)");
    println!("load count:        {}", conn.loads_from_storage());
    Ok(())
}
