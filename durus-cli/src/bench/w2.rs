//! W2: cold read. A new process (and for `srv` a new server) opens the
//! file W1 wrote, with a cache of N + 10,000 objects, gets the root
//! (reported as `open_s`), then walks the Container in key order, loading
//! every item and checking it. One op is one item visited.

use super::items::{self, Common, Item, ItemsRoot, Target, MAX_LOOP_TIME, MAX_OPS};
use super::json::Record;
use super::procs::{self, CpuSnapshot};
use durus_core::error::Result;
use durus_core::{Connection, PRef};
use std::time::Instant;

/// The parameters of a W2 run.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// N: the items W1 wrote.
    pub n: u64,
    pub common: Common,
}

/// What the traversal found.
struct Walk {
    open_s: f64,
    seconds: f64,
    count: u64,
    total: u64,
    bad: u64,
    loads: u64,
    requests: u64,
    /// The process's anonymous memory (heap) once every object is loaded,
    /// KiB: unlike the peak RSS, without the file's pages that loads read
    /// through the memory map.
    anon_kb: Option<u64>,
}

/// Runs W2 and returns its result record (`verified` says whether the
/// check passed).
pub fn run(opts: &Options) -> Result<Record> {
    items::check_count("n", opts.n, MAX_OPS)?;
    let cpu = CpuSnapshot::take();
    let mut server = match opts.target {
        Target::Server => Some(items::start_server(&opts.common)?),
        Target::Embedded => None,
    };
    let outcome = walk(opts, server.as_ref());
    let server_rss_kb = server.as_mut().and_then(|s| {
        s.sample_vmhwm();
        s.stop();
        s.vmhwm_kb()
    });
    let w = outcome?;
    let n = opts.n;
    let verified = w.count == n
        && w.bad == 0
        && u128::from(w.total) == u128::from(n) * u128::from(n.saturating_sub(1)) / 2;
    let mut rec = items::run_record("W2", &opts.common, &cpu);
    rec.set("target", opts.target.name())
        .set("n", n)
        .set("count", w.count)
        .set("verified", verified)
        .set("seconds", w.seconds)
        .set("objs_per_s", w.count as f64 / w.seconds)
        .set("open_s", w.open_s)
        .set("storage_loads", w.loads)
        .set("load_requests", w.requests)
        .set("server_rss_kb", server_rss_kb)
        .set("client_rss_kb", items::self_peak_rss_kb())
        .set("client_rss_anon_kb", w.anon_kb);
    Ok(rec)
}

fn walk(opts: &Options, server: Option<&procs::ServerProcess>) -> Result<Walk> {
    let t0 = Instant::now();
    let inner = items::open_storage(opts.target, &opts.common, server)?;
    let (storage, counter) = durus_core::storage::Counting::new(inner);
    let cache = usize::try_from(opts.n)
        .unwrap_or(usize::MAX)
        .saturating_add(10_000);
    let conn = Connection::with_cache_size(Box::new(storage), cache);
    let root: PRef<ItemsRoot> = conn.root()?;
    let open_s = t0.elapsed().as_secs_f64();
    let (parent, container) = items::parent_and_items(&root)?;
    let (mut count, mut total, mut bad) = (0u64, 0u64, 0u64);
    let loads_before = conn.loads_from_storage();
    let requests_before = counter.loads().requests;
    let t0 = Instant::now();
    for entry in container.iter() {
        let (k, item): (u64, PRef<Item>) = entry?;
        {
            let v = item.read()?;
            total = total.wrapping_add(v.n);
            if !v.parent.ptr_eq(&parent) || v.s.len() != 100 || k != v.n {
                bad += 1;
            }
        }
        count += 1;
        if count >= MAX_OPS || (count.is_multiple_of(4096) && t0.elapsed() > MAX_LOOP_TIME) {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let anon_kb = procs::proc_status_kb(std::process::id(), "RssAnon");
    let loads = conn.loads_from_storage() - loads_before;
    let requests = counter.loads().requests - requests_before;
    if parent.read()?.name != items::PARENT_NAME {
        bad += 1;
    }
    drop((parent, container, root));
    items::close(conn)?;
    Ok(Walk {
        open_s,
        seconds,
        count,
        total,
        bad,
        loads,
        requests,
        anon_kb,
    })
}
