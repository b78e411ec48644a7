//! W1: insert N items into the Container, committing every B, embedded or
//! through a server. One op is one item inserted; the timed region is the
//! inserts and commits, from the first insert until the last commit
//! returns. The file written is the input of W2, W3, W6 and W7.
//!
//! W6's build is this workload with N = 1,000,000 and B = 10,000
//! (reported as `W6build`).

use super::data;
use super::items::{self, Common, Item, Items, ItemsRoot, Parent, Target, MAX_LOOP_TIME, MAX_OPS};
use super::json::Record;
use super::procs::{self, CpuSnapshot};
use durus_core::error::Result;
use durus_core::{Connection, PRef};
use std::time::Instant;

/// The parameters of a W1 run.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// N: items inserted.
    pub n: u64,
    /// B: items per commit.
    pub batch: u64,
    /// The workload name in the result line (`W1`, or `W6build`).
    pub workload: String,
    pub common: Common,
}

/// The cache size of the inserting connection.
pub const CACHE_SIZE: usize = 10_000;

/// Runs W1 and returns its result record.
pub fn run(opts: &Options) -> Result<Record> {
    items::check_count("n", opts.n, MAX_OPS)?;
    items::check_count("batch", opts.batch, MAX_OPS)?;
    let cpu = CpuSnapshot::take();
    // Untimed: the old file (or the PostgreSQL database's durus tables)
    // goes, the strings are computed, the server starts, the empty
    // database gets its parent and container.
    if opts.common.server.is_none() {
        items::fresh_database(&opts.common)?;
    }
    let mut strings: Vec<String> = (0..opts.n).map(data::item_string).collect();
    let mut server = match opts.target {
        Target::Server => Some(items::start_server(&opts.common)?),
        Target::Embedded => None,
    };
    let outcome = insert_all(opts, server.as_ref(), &mut strings);
    let server_rss_kb = server.as_mut().and_then(|s| {
        s.sample_vmhwm();
        s.stop();
        s.vmhwm_kb()
    });
    let (seconds, commits) = outcome?;
    let mut rec = items::run_record(&opts.workload, &opts.common, &cpu);
    let file_size = match opts.common.postgres {
        Some(_) => None,
        None => items::file_size(&opts.common.db),
    };
    rec.set("target", opts.target.name())
        .set("n", opts.n)
        .set("batch", opts.batch)
        .set("commits", commits)
        .set("seconds", seconds)
        .set("objs_per_s", opts.n as f64 / seconds)
        .set("file_size", file_size)
        .set("server_rss_kb", server_rss_kb)
        .set("client_rss_kb", items::self_peak_rss_kb());
    Ok(rec)
}

/// Seconds of the timed region and commits made in it.
fn insert_all(
    opts: &Options,
    server: Option<&procs::ServerProcess>,
    strings: &mut [String],
) -> Result<(f64, u64)> {
    let storage = items::open_storage(opts.target, &opts.common, server)?;
    let conn = Connection::with_cache_size(storage, CACHE_SIZE);
    let root: PRef<ItemsRoot> = conn.root()?;
    let parent = PRef::new(Parent {
        name: items::PARENT_NAME.to_string(),
    });
    let container = Items::new();
    {
        let mut r = root.write()?;
        r.parent = Some(parent.clone());
        r.items = Some(container.clone());
    }
    conn.commit()?;
    drop(root);

    let mut commits = 0u64;
    let t0 = Instant::now();
    for (i, s) in (0..opts.n).zip(strings.iter_mut()) {
        let item = Item {
            n: i,
            s: std::mem::take(s),
            parent: parent.clone(),
        };
        container.insert(i, PRef::new(item))?;
        if (i + 1).is_multiple_of(opts.batch) {
            conn.commit()?;
            commits += 1;
            if t0.elapsed() > MAX_LOOP_TIME {
                return Err(items::check_failed("W1 (time bound reached)"));
            }
        }
    }
    if !opts.n.is_multiple_of(opts.batch) {
        conn.commit()?;
        commits += 1;
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(container);
    drop(parent);
    items::close(conn)?;
    Ok((seconds, commits))
}
