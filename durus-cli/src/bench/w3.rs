//! W3: random point loads, through a server (`srv`, the definition's) or
//! on the file opened in this process (`emb`, as the embedded stores are
//! measured). With `srv` a new server serves the file W1 wrote; a first
//! connection maps each index to its item's oid (loading only the
//! Container's nodes); then a new connection with a cache of 100 loads K
//! distinct items chosen by `sample(N, K, 42)`, one `get` each, ending the
//! read transaction every 100 ops. With `emb` the same two connections
//! open the file one after the other. One op is one object load; each
//! op's latency is timed, the aborts are only in the throughput.
//!
//! On PostgreSQL (`--storage postgresql://...`) the same loop also times
//! the bare prepared `SELECT data FROM durus_object WHERE oid = $1` of
//! the same oids on a session of its own, 100 at a time, before and after
//! each transaction's loads in turn: the bound of a point load there.

use super::data;
use super::items::{self, Common, Item, ItemsRoot, Target, MAX_LOOP_TIME, MAX_OPS};
use super::json::Record;
use super::procs::{self, bench_error, CpuSnapshot};
use durus_core::error::Result;
use durus_core::{Connection, Oid, PRef};
use std::time::Instant;

/// The parameters of a W3 run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the storage is: the file itself (`emb`) or a server (`srv`).
    pub target: Target,
    /// N: the items W1 wrote.
    pub n: u64,
    /// K: distinct items loaded.
    pub k: u64,
    pub common: Common,
}

/// The cache size of the loading connection.
pub const CACHE_SIZE: usize = 100;

/// Ops per read transaction.
pub const OPS_PER_TRANSACTION: u64 = 100;

/// The seed of the sample.
pub const SEED: u64 = 42;

struct Loads {
    seconds: f64,
    lat_ns: Vec<u64>,
    bad: u64,
    records: u64,
    requests: u64,
    /// Sorted round trips of a sync before the timed region.
    rt_ns: Vec<u64>,
    /// On PostgreSQL: the seconds and sorted latencies of the bare
    /// `SELECT data ... WHERE oid = $1` of the same oids, after the loads.
    bare: Option<(f64, Vec<u64>)>,
}

/// Sync round trips measured before the timed region.
const ROUND_TRIPS: usize = 2000;

/// Runs W3 and returns its result record.
pub fn run(opts: &Options) -> Result<Record> {
    items::check_count("n", opts.n, MAX_OPS)?;
    items::check_count("k", opts.k, opts.n)?;
    let cpu = CpuSnapshot::take();
    let (outcome, server_rss_kb) = match opts.target {
        Target::Server => {
            let mut server = items::start_server(&opts.common)?;
            let outcome = point_loads(opts, Some(&server));
            server.sample_vmhwm();
            server.stop();
            (outcome, server.vmhwm_kb())
        }
        Target::Embedded => (point_loads(opts, None), None),
    };
    let mut l = outcome?;
    l.lat_ns.sort_unstable();
    let k = opts.k;
    let us = |p: f64| data::percentile(&l.lat_ns, p).map(|ns| ns as f64 / 1000.0);
    let rt = |p: f64| data::percentile(&l.rt_ns, p).map(|ns| ns as f64 / 1000.0);
    let mean_us =
        l.lat_ns.iter().map(|&x| x as f64).sum::<f64>() / l.lat_ns.len().max(1) as f64 / 1000.0;
    let verified = l.bad == 0 && l.lat_ns.len() as u64 == k;
    let mut rec = items::run_record("W3", &opts.common, &cpu);
    rec.set("target", opts.target.name())
        .set("n", opts.n)
        .set("k", k)
        .set("verified", verified)
        .set("seconds", l.seconds)
        .set("loads_per_s", k as f64 / l.seconds)
        .set("p50_us", us(50.0))
        .set("p99_us", us(99.0))
        .set("p999_us", us(99.9))
        .set("mean_us", mean_us)
        .set("storage_loads_per_op", l.records as f64 / k as f64)
        .set("load_requests_per_op", l.requests as f64 / k as f64)
        .set("sync_rt_p50_us", rt(50.0))
        .set("sync_rt_p99_us", rt(99.0))
        .set("server_rss_kb", server_rss_kb)
        .set("client_rss_kb", items::self_peak_rss_kb());
    if let Some((seconds, lat)) = &l.bare {
        let us = |p: f64| data::percentile(lat, p).map(|ns| ns as f64 / 1000.0);
        rec.set("bare_select_per_s", lat.len() as f64 / seconds)
            .set("bare_select_p50_us", us(50.0))
            .set("bare_select_p99_us", us(99.0))
            .set(
                "loads_vs_bare_select",
                (k as f64 / l.seconds) / (lat.len() as f64 / seconds),
            );
    }
    Ok(rec)
}

/// Index -> oid of every item, from the Container's nodes only.
fn item_oids(opts: &Options, server: Option<&procs::ServerProcess>) -> Result<Vec<Option<Oid>>> {
    let storage = items::open_storage(opts.target, &opts.common, server)?;
    let cache = usize::try_from(opts.n)
        .unwrap_or(usize::MAX)
        .saturating_add(10_000);
    let conn = Connection::with_cache_size(storage, cache);
    let root: PRef<ItemsRoot> = conn.root()?;
    let (_, container) = items::parent_and_items(&root)?;
    let n = usize::try_from(opts.n).map_err(|_| bench_error("--n is too large"))?;
    let mut oids = vec![None; n];
    for entry in container.iter().take(n) {
        let (k, item): (u64, PRef<Item>) = entry?;
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| oids.get_mut(k)) {
            *slot = item.oid();
        }
    }
    drop((container, root));
    items::close(conn)?;
    Ok(oids)
}

fn point_loads(opts: &Options, server: Option<&procs::ServerProcess>) -> Result<Loads> {
    let oids = item_oids(opts, server)?;
    let order = data::sample(opts.n, opts.k, SEED);
    let targets: Vec<(u64, Oid)> = order
        .iter()
        .map(|&i| {
            usize::try_from(i)
                .ok()
                .and_then(|j| oids.get(j).copied().flatten())
                .map(|oid| (i, oid))
                .ok_or_else(|| bench_error(format!("item {i} is missing from the container")))
        })
        .collect::<Result<_>>()?;
    drop(oids);

    let inner = items::open_storage(opts.target, &opts.common, server)?;
    let (storage, counter) = durus_core::storage::Counting::new(inner);
    let conn = Connection::with_cache_size(Box::new(storage), CACHE_SIZE);
    // Untimed: the bare round trip to this server in this placement of
    // the processes on the CPUs (a sync, which loads nothing). None when
    // the file is opened in this process.
    let round_trips = if server.is_some() { ROUND_TRIPS } else { 0 };
    let mut rt_ns = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let a = Instant::now();
        conn.with_storage(|s| s.sync())?;
        rt_ns.push(u64::try_from(a.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    rt_ns.sort_unstable();
    // On PostgreSQL, the bare SELECT of the same oids runs in the same
    // loop, a transaction's worth at a time, before and after the loads in
    // turn, so that both see the same machine.
    let mut bare = match &opts.common.postgres {
        Some(url) => Some(BareSelect::open(url, targets.len())?),
        None => None,
    };
    let before = counter.loads();
    let mut lat_ns = Vec::with_capacity(targets.len());
    let mut bad = 0u64;
    let mut seconds = 0.0;
    let t0 = Instant::now();
    let per_transaction = usize::try_from(OPS_PER_TRANSACTION).unwrap_or(usize::MAX);
    for (c, chunk) in targets.chunks(per_transaction).enumerate() {
        let bare_first = c % 2 == 1;
        if let (Some(b), true) = (bare.as_mut(), bare_first) {
            b.run(chunk)?;
        }
        let started = Instant::now();
        for &(i, oid) in chunk {
            let a = Instant::now();
            let obj = conn.get::<Item>(oid)?;
            if obj.read()?.n != i {
                bad += 1;
            }
            lat_ns.push(u64::try_from(a.elapsed().as_nanos()).unwrap_or(u64::MAX));
            drop(obj);
        }
        if chunk.len() == per_transaction {
            conn.abort()?;
        }
        seconds += started.elapsed().as_secs_f64();
        if let (Some(b), false) = (bare.as_mut(), bare_first) {
            b.run(chunk)?;
        }
        if t0.elapsed() > MAX_LOOP_TIME {
            break;
        }
    }
    let after = counter.loads();
    items::close(conn)?;
    let bare = match bare {
        Some(b) => Some(b.finish()?),
        None => None,
    };
    Ok(Loads {
        seconds,
        lat_ns,
        bad,
        records: after.records - before.records,
        requests: after.requests - before.requests,
        rt_ns,
        bare,
    })
}

/// The bound of a point load on PostgreSQL: the prepared `SELECT data
/// FROM durus_object WHERE oid = $1`, one round trip per oid on a session
/// of this process (autocommit).
#[cfg(feature = "postgres")]
struct BareSelect {
    client: postgres::Client,
    select: postgres::Statement,
    seconds: f64,
    lat_ns: Vec<u64>,
}

#[cfg(feature = "postgres")]
impl BareSelect {
    fn open(url: &str, capacity: usize) -> Result<BareSelect> {
        let mut client = postgres::Client::connect(url, postgres::NoTls)
            .map_err(|e| bare_failed("connect", e))?;
        let select = client
            .prepare("SELECT data FROM durus_object WHERE oid = $1")
            .map_err(|e| bare_failed("prepare", e))?;
        Ok(BareSelect {
            client,
            select,
            seconds: 0.0,
            lat_ns: Vec::with_capacity(capacity),
        })
    }

    /// Selects the record of each oid of `targets`, timing each.
    fn run(&mut self, targets: &[(u64, Oid)]) -> Result<()> {
        let started = Instant::now();
        for &(_, oid) in targets {
            let key =
                i64::try_from(oid.0).map_err(|_| bench_error(format!("oid {oid} is too large")))?;
            let a = Instant::now();
            let row = self
                .client
                .query_opt(&self.select, &[&key])
                .map_err(|e| bare_failed("select", e))?;
            self.lat_ns
                .push(u64::try_from(a.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if row.is_none() {
                return Err(bench_error(format!("bare SELECT: no row for oid {oid}")));
            }
        }
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// The seconds of all the selects and their sorted latencies.
    fn finish(mut self) -> Result<(f64, Vec<u64>)> {
        self.client.close().map_err(|e| bare_failed("close", e))?;
        self.lat_ns.sort_unstable();
        Ok((self.seconds, self.lat_ns))
    }
}

#[cfg(feature = "postgres")]
fn bare_failed(doing: &str, e: postgres::Error) -> durus_core::Error {
    bench_error(format!("bare SELECT: {doing}: {e}"))
}

/// Without PostgreSQL support there is no PostgreSQL run to compare with.
#[cfg(not(feature = "postgres"))]
struct BareSelect;

#[cfg(not(feature = "postgres"))]
impl BareSelect {
    fn open(_url: &str, _capacity: usize) -> Result<BareSelect> {
        Err(bench_error(crate::tools::POSTGRES_MISSING))
    }

    fn run(&mut self, _targets: &[(u64, Oid)]) -> Result<()> {
        Ok(())
    }

    fn finish(self) -> Result<(f64, Vec<u64>)> {
        Ok((0.0, Vec::new()))
    }
}
