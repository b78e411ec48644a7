//! W6: the open time of a large database (the file W6's build wrote: W1
//! embedded with N = 1,000,000 and B = 10,000). `open` times from just
//! before the storage is opened until the root is loaded (connection cache
//! 100,000), then reports the RSS and a first lookup of item N/2. `pack`
//! times one pack of the file.

use super::items::{self, Common, ItemsRoot, MAX_OPS};
use super::json::Record;
use super::procs::{bench_error, CpuSnapshot};
use durus_core::error::Result;
use durus_core::{Connection, PRef};
use std::time::Instant;

/// The parameters of a W6 open or pack.
#[derive(Debug, Clone)]
pub struct Options {
    /// N: the items in the file.
    pub n: u64,
    /// The variant's name in the result line (`unpacked`, `packed`).
    pub variant: String,
    pub common: Common,
}

/// The cache size of the opening connection.
pub const OPEN_CACHE_SIZE: usize = 100_000;

/// The cache size of the packing connection.
pub const PACK_CACHE_SIZE: usize = 10_000;

/// Both W6 runs need a sane N and an existing file.
fn check(opts: &Options) -> Result<()> {
    items::check_count("n", opts.n, MAX_OPS)?;
    if !opts.common.db.exists() {
        return Err(bench_error(format!(
            "{} does not exist",
            opts.common.db.display()
        )));
    }
    Ok(())
}

/// Opens the file, loads the root, looks up item N/2.
pub fn open(opts: &Options) -> Result<Record> {
    check(opts)?;
    let cpu = CpuSnapshot::take();
    let t0 = Instant::now();
    let storage = items::open_file(&opts.common.db, opts.common.fsync)?;
    let conn = Connection::with_cache_size(Box::new(storage), OPEN_CACHE_SIZE);
    let root: PRef<ItemsRoot> = conn.root()?;
    let open_s = t0.elapsed().as_secs_f64();
    let rss_after_open_kb = items::self_rss_kb();
    let mid = opts.n / 2;
    let t0 = Instant::now();
    let (_, container) = items::parent_and_items(&root)?;
    let found = match container.get(&mid)? {
        Some(item) => item.read()?.n == mid,
        None => false,
    };
    let first_lookup_s = t0.elapsed().as_secs_f64();
    drop((container, root));
    items::close(conn)?;
    let mut rec = items::record("W6", None, &cpu);
    rec.set("variant", opts.variant.as_str())
        .set("n", opts.n)
        .set("open_s", open_s)
        .set("first_lookup_s", first_lookup_s)
        .set("rss_after_open_kb", rss_after_open_kb)
        .set("verified", found)
        .set("file_size", items::file_size(&opts.common.db));
    Ok(rec)
}

/// Packs the file once.
pub fn pack(opts: &Options) -> Result<Record> {
    check(opts)?;
    let cpu = CpuSnapshot::take();
    let storage = items::open_file(&opts.common.db, opts.common.fsync)?;
    let conn = Connection::with_cache_size(Box::new(storage), PACK_CACHE_SIZE);
    let size_before = items::file_size(&opts.common.db);
    let t0 = Instant::now();
    conn.pack()?;
    let pack_s = t0.elapsed().as_secs_f64();
    items::close(conn)?;
    remove_prepack(&opts.common.db);
    let mut rec = items::record("W6pack", Some(opts.common.fsync), &cpu);
    rec.set("n", opts.n)
        .set("pack_s", pack_s)
        .set("size_before", size_before)
        .set("size_after", items::file_size(&opts.common.db))
        .set("client_rss_kb", items::self_peak_rss_kb());
    Ok(rec)
}

/// Removes `<db>.prepack`, the copy a pack keeps.
pub fn remove_prepack(db: &std::path::Path) {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".prepack");
    let _ = std::fs::remove_file(db.with_file_name(name));
}
