//! W7: pack with 50 % garbage. A copy of the W1-emb file loses every odd
//! key (committing every B deletions); the file is closed and reopened,
//! and one full pack is timed. The check: N/2 keys remain.

use super::items::{self, Common, ItemsRoot, MAX_LOOP_TIME, MAX_OPS};
use super::json::Record;
use super::procs::{self, bench_error, CpuSnapshot};
use super::w6::remove_prepack;
use durus_core::error::Result;
use durus_core::{Connection, PRef};
use std::path::PathBuf;
use std::time::Instant;

/// The parameters of a W7 run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The W1-emb file (copied, not changed).
    pub src: PathBuf,
    /// N: the items in it.
    pub n: u64,
    /// Deletions per commit.
    pub batch: u64,
    /// `common.db` is the copy (removed at the end).
    pub common: Common,
}

/// The cache size of both connections.
pub const CACHE_SIZE: usize = 10_000;

/// Runs W7 and returns its result record.
pub fn run(opts: &Options) -> Result<Record> {
    items::check_count("n", opts.n, MAX_OPS)?;
    items::check_count("batch", opts.batch, MAX_OPS)?;
    if opts.src == opts.common.db {
        return Err(bench_error("--src and --db must differ"));
    }
    let cpu = CpuSnapshot::take();
    let db = &opts.common.db;
    procs::remove_db(db);
    std::fs::copy(&opts.src, db).map_err(durus_core::Error::Io)?;
    let outcome = delete_and_pack(opts);
    procs::remove_db(db);
    let (deleted, pack_s, size_before, size_after, records_after, keys, pack_rss) = outcome?;
    let verified = keys == opts.n - deleted;
    let mut rec = items::record("W7", Some(opts.common.fsync), &cpu);
    rec.set("n", opts.n)
        .set("deleted", deleted)
        .set("pack_s", pack_s)
        .set("size_before", size_before)
        .set("size_after", size_after)
        .set("records_after", records_after)
        .set("items_after", keys)
        .set("verified", verified)
        .set("client_rss_kb", items::self_peak_rss_kb())
        .set("rss_before_pack_kb", pack_rss.0)
        .set("pack_peak_rss_kb", pack_rss.1);
    Ok(rec)
}

/// Deleted, pack seconds, sizes before and after, records after, keys
/// after, and the resident set (KiB) before the pack and at its peak.
type Outcome = (
    u64,
    f64,
    Option<u64>,
    Option<u64>,
    usize,
    u64,
    (Option<u64>, Option<u64>),
);

fn delete_and_pack(opts: &Options) -> Result<Outcome> {
    let db = &opts.common.db;
    // Untimed: delete every odd key.
    let storage = items::open_file(db, opts.common.fsync)?;
    let conn = Connection::with_cache_size(Box::new(storage), CACHE_SIZE);
    let root: PRef<ItemsRoot> = conn.root()?;
    let (_, container) = items::parent_and_items(&root)?;
    let mut deleted = 0u64;
    let t0 = Instant::now();
    for i in (1..opts.n).step_by(2) {
        container.remove(&i)?;
        deleted += 1;
        if deleted.is_multiple_of(opts.batch) {
            conn.commit()?;
            if t0.elapsed() > MAX_LOOP_TIME {
                return Err(items::check_failed("W7 (time bound reached)"));
            }
        }
    }
    conn.commit()?;
    drop((container, root));
    items::close(conn)?;
    let size_before = items::file_size(db);

    // Timed: the pack only, not the open.
    let storage = items::open_file(db, opts.common.fsync)?;
    let conn = Connection::with_cache_size(Box::new(storage), CACHE_SIZE);
    let rss_before_pack = items::self_rss_kb();
    items::reset_peak_rss();
    let t0 = Instant::now();
    conn.pack()?;
    let pack_s = t0.elapsed().as_secs_f64();
    let pack_rss = (rss_before_pack, items::self_peak_rss_kb());
    let root: PRef<ItemsRoot> = conn.root()?;
    let (_, container) = items::parent_and_items(&root)?;
    let mut keys = 0u64;
    for k in container.keys() {
        k?;
        keys += 1;
        if keys >= MAX_OPS {
            break;
        }
    }
    drop((container, root));
    items::close(conn)?;
    let size_after = items::file_size(db);
    remove_prepack(db);
    let records_after = items::open_file(db, opts.common.fsync)?.oids()?.len();
    Ok((
        deleted,
        pack_s,
        size_before,
        size_after,
        records_after,
        keys,
        pack_rss,
    ))
}
