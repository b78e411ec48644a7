//! What W4 (disjoint commits) and W5 (hot counter) share: C workers
//! increment counters from a common start instant for D seconds; the
//! runner then checks the counters.
//!
//! Through a server (`srv`, the definition's), the runner ([`run`]) starts
//! the server, makes the counters, spawns the worker processes (`durus
//! bench worker`), checks, stops the server and returns the result record.
//! A worker ([`run_worker`]) is one client process. Embedded (`emb`, as
//! the embedded stores are measured), the runner opens the file in its own
//! process, shares it through a [`Hub`], and runs C threads with one
//! connection each; it checks the counters after closing and reopening
//! the file.
//!
//! The persistent types (the root and the two kinds of counter) come from
//! the program through [`CounterModel`]: the library defines none of its
//! own, so none shows up among its users' types.

use super::items::Target;
use super::json::Record;
use super::keyed::{self, KeyedCounters};
use super::procs::{self, bench_error, CpuSnapshot, ServerProcess};
use crate::tools::FsyncPolicy;
use durus_core::error::{Error, Result};
use durus_core::storage::{ClientStorage, FileOptions, FileStorage};
use durus_core::{Connection, Hub, Oid, PRef, Persistent, Storage};
use std::path::PathBuf;

mod database;

pub use database::{counter_value, counter_value_at, setup, store_detached};
use database::{counter_value_on, setup_on};
use std::time::{Duration, Instant};

/// A bound on every timed loop besides its time bound (as the peer's).
pub const MAX_OPS: u64 = 10_000_000;

/// The cache size of a worker's connection.
pub const WORKER_CACHE_SIZE: usize = 1000;

/// How long after the end of the timed region workers may take to exit.
const WORKER_EXTRA_TIMEOUT: Duration = Duration::from_secs(90);

/// A counter of the workloads: one integer, `value`, starting at 0.
pub trait BenchCounter: Persistent + Default {
    /// The current value.
    fn value(&self) -> i64;
    /// Adds one.
    fn increment(&mut self);
}

/// The persistent types of a W4/W5 database: a root holding named
/// counters of two kinds, a plain one (concurrent commits conflict) and a
/// merging one (its `value` is `#[merge(sum)]`).
pub trait CounterModel: 'static {
    /// The root object.
    type Root: Persistent + Default;
    /// A counter whose concurrent commits conflict.
    type Plain: BenchCounter;
    /// A counter whose concurrent commits merge.
    type Merging: BenchCounter;
    /// The plain counter stored under `key`.
    fn plain(root: &Self::Root, key: &str) -> Option<PRef<Self::Plain>>;
    /// The merging counter stored under `key`.
    fn merging(root: &Self::Root, key: &str) -> Option<PRef<Self::Merging>>;
    /// Stores a plain counter under `key`.
    fn insert_plain(root: &mut Self::Root, key: String, counter: PRef<Self::Plain>);
    /// Stores a merging counter under `key`.
    fn insert_merging(root: &mut Self::Root, key: String, counter: PRef<Self::Merging>);
    /// The tree of per-key counters (W5 `btree-sum`), if there is one.
    fn keyed(root: &Self::Root) -> Option<KeyedCounters>;
    /// Stores the tree of per-key counters.
    fn insert_keyed(root: &mut Self::Root, tree: KeyedCounters);
}

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Each client its own counter `c<idx>`.
    W4,
    /// All clients one counter, `hot`.
    W5,
}

impl Mode {
    /// The name on the command line (`w4`, `w5`).
    pub fn arg(self) -> &'static str {
        match self {
            Mode::W4 => "w4",
            Mode::W5 => "w5",
        }
    }

    /// The workload name in result lines (`W4`, `W5`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::W4 => "W4",
            Mode::W5 => "W5",
        }
    }

    /// The root key of client `idx`'s counter.
    pub fn key(self, idx: usize) -> String {
        match self {
            Mode::W4 => format!("c{idx}"),
            Mode::W5 => "hot".to_string(),
        }
    }
}

/// How concurrent commits of a counter are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// A plain counter: a conflict is aborted and retried (Durus's way).
    AbortRetry,
    /// A merging counter (`#[merge(sum)]`): concurrent commits merge.
    #[value(name = "merge")]
    Merging,
    /// W5 only: 16 keys of one `BTree` whose values are per-key counters
    /// (`per_key::Sum`); each client increments the keys in turn, and
    /// concurrent increments of a key merge.
    #[value(name = "btree-sum")]
    BtreeSum,
}

impl Variant {
    /// The name on the command line and in result lines.
    pub fn name(self) -> &'static str {
        match self {
            Variant::AbortRetry => "abort-retry",
            Variant::Merging => "merge",
            Variant::BtreeSum => "btree-sum",
        }
    }
}

/// The parameters of a W4 or W5 run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the clients are: processes through a server (`srv`), or
    /// threads on the file opened in this process (`emb`).
    pub target: Target,
    /// C: the number of clients (processes, or threads with `emb`).
    pub clients: usize,
    /// D: the timed region, in seconds.
    pub duration: f64,
    /// The database file (removed first; unused when `postgres` is given).
    pub db: PathBuf,
    /// A PostgreSQL database, by its URL, to use instead of the file (its
    /// durus tables dropped first). Embedded, each client thread has its
    /// own `PgStorage` (own session); through a server, the run starts
    /// `durus serve --storage URL`.
    pub postgres: Option<String>,
    /// How concurrent commits are handled.
    pub variant: Variant,
    /// The file storage's fsync policy (embedded, or the server the run
    /// starts).
    pub fsync: FsyncPolicy,
    /// A running server to use instead of starting one.
    pub server: Option<String>,
    /// The `durus` binary: it runs the server and the workers.
    pub exe: PathBuf,
}

/// One worker process's parameters.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub mode: Mode,
    pub variant: Variant,
    /// The server's address.
    pub server: String,
    /// The client's index: W4's counter `c<idx>`.
    pub idx: usize,
    /// Increment the counter stored under this oid instead of the root's.
    pub oid: Option<Oid>,
    /// T0, the common start instant, in seconds since the Unix epoch.
    pub start_at: f64,
    /// D, in seconds.
    pub duration: f64,
    /// Stop after this many successes (besides the time bound).
    pub count: Option<u64>,
}

/// What one worker did in its timed region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerOutcome {
    pub idx: usize,
    /// Successful commits.
    pub ok: u64,
    /// Conflicts seen by the application (aborted and retried).
    pub conflicts: u64,
    /// Commits merged with another client's by the connection.
    pub merges: u64,
    /// Seconds the loop ran.
    pub elapsed: f64,
    /// How late the loop started after T0, in seconds.
    pub late: f64,
}

impl WorkerOutcome {
    /// The worker's `RESULT` record.
    pub fn record(&self) -> Record {
        let mut r = Record::new();
        r.set("idx", self.idx)
            .set("ok", self.ok)
            .set("conflicts", self.conflicts)
            .set("merges", self.merges)
            .set("elapsed", self.elapsed)
            .set("late", self.late);
        r
    }
}

/// One client process of W4/W5: connects (cache size 1,000), loads its
/// counter, ends the transaction, sleeps until T0, then increments and
/// commits until T0 + D (or `count` successes), aborting and retrying on
/// conflicts.
pub fn run_worker<M: CounterModel>(opts: &WorkerOptions) -> Result<WorkerOutcome> {
    let storage = ClientStorage::connect(&opts.server)?;
    let conn = Connection::with_cache_size(Box::new(storage), WORKER_CACHE_SIZE);
    work_on::<M>(&conn, opts)
}

/// A worker's part on its connection, `conn`: find the counter, increment
/// it until T0 + D, end the transaction.
fn work_on<M: CounterModel>(conn: &Connection, opts: &WorkerOptions) -> Result<WorkerOutcome> {
    let key = opts.mode.key(opts.idx);
    let outcome = match opts.variant {
        Variant::AbortRetry => {
            let counter = find::<M, M::Plain>(conn, opts.oid, |r| M::plain(r, &key))?;
            counter.read()?; // load it
            increment_loop(conn, opts, |_| counter.write().map(|mut c| c.increment()))?
        }
        Variant::Merging => {
            let counter = find::<M, M::Merging>(conn, opts.oid, |r| M::merging(r, &key))?;
            counter.read()?;
            increment_loop(conn, opts, |_| counter.write().map(|mut c| c.increment()))?
        }
        Variant::BtreeSum => {
            let root: PRef<M::Root> = conn.root()?;
            let found = M::keyed(&*root.read()?);
            let tree = found.ok_or_else(|| bench_error("the tree is missing from the root"))?;
            keyed::load(&tree)?;
            increment_loop(conn, opts, |done| keyed::increment(&tree, opts.idx, done))?
        }
    };
    conn.abort()?;
    Ok(outcome)
}

/// The counter under `oid`, or the one `pick` finds in the root.
fn find<M: CounterModel, T: Persistent>(
    conn: &Connection,
    oid: Option<Oid>,
    pick: impl Fn(&M::Root) -> Option<PRef<T>>,
) -> Result<PRef<T>> {
    match oid {
        Some(oid) => conn.get::<T>(oid),
        None => {
            let root: PRef<M::Root> = conn.root()?;
            let found = pick(&*root.read()?);
            found.ok_or_else(|| bench_error("the counter is missing from the root"))
        }
    }
}

/// Ends the transaction that loaded the objects, sleeps until T0, then
/// makes `change` (given the number of successes so far) and commits until
/// T0 + D, aborting and retrying conflicts.
fn increment_loop(
    conn: &Connection,
    opts: &WorkerOptions,
    mut change: impl FnMut(u64) -> Result<()>,
) -> Result<WorkerOutcome> {
    conn.abort()?;
    procs::sleep_until_wall(opts.start_at);
    let late = procs::wall_now() - opts.start_at;
    let left = (opts.start_at + opts.duration - procs::wall_now()).max(0.0);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(left);
    let target = opts.count.unwrap_or(MAX_OPS);
    let merges_before = conn.merge_count();
    let (mut ok, mut conflicts) = (0u64, 0u64);
    while ok < target && ok + conflicts < MAX_OPS && Instant::now() < end {
        let attempt = change(ok).and_then(|()| conn.commit());
        match attempt {
            Ok(()) => ok += 1,
            Err(e) if e.is_conflict() || matches!(e, Error::NeedsAbort) => {
                conn.abort()?;
                conflicts += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(WorkerOutcome {
        idx: opts.idx,
        ok,
        conflicts,
        merges: conn.merge_count() - merges_before,
        elapsed: t0.elapsed().as_secs_f64(),
        late,
    })
}

/// Runs W4 or W5 as the benchmark definitions do (`docs/PERFORMANCE.md`,
/// "How to run") and returns its result record
/// (already verified: `verified` says whether the check passed).
pub fn run<M: CounterModel>(mode: Mode, opts: &RunOptions) -> Result<Record> {
    if opts.clients == 0 {
        return Err(bench_error("--c must be at least 1"));
    }
    if !(opts.duration.is_finite() && opts.duration > 0.0 && opts.duration < 86_400.0) {
        return Err(bench_error(
            "--duration must be between 0 and 86400 seconds",
        ));
    }
    let cpu = CpuSnapshot::take();
    let (results, verified, final_value, server_rss_kb, storage, fsync) = match opts.target {
        Target::Server => {
            let mut server = match &opts.server {
                Some(address) => ServerProcess::external(address)?,
                None => match &opts.postgres {
                    Some(url) => {
                        crate::tools::drop_postgres_schema(url)?;
                        ServerProcess::start_postgres(&opts.exe, url)?
                    }
                    None => {
                        procs::remove_db(&opts.db);
                        ServerProcess::start(&opts.exe, &opts.db, opts.fsync)?
                    }
                },
            };
            let address = server.address().to_string();
            let outcome = run_on::<M>(mode, opts, &address);
            server.sample_vmhwm();
            let stopped = server.stop();
            let (results, verified, final_value) = outcome?;
            if !stopped {
                eprintln!("durus bench: the server did not exit cleanly after Q");
            }
            let kind = server.storage();
            (
                results,
                verified,
                final_value,
                server.vmhwm_kb(),
                kind.name(),
                fsync_name(opts.fsync, kind),
            )
        }
        Target::Embedded => {
            if opts.server.is_some() {
                return Err(bench_error("--server is for --target srv"));
            }
            let (results, verified, final_value) = run_in_process::<M>(mode, opts)?;
            let kind = match opts.postgres {
                Some(_) => procs::StorageKind::Postgres,
                None => procs::StorageKind::File,
            };
            (
                results,
                verified,
                final_value,
                None,
                kind.name(),
                fsync_name(opts.fsync, kind),
            )
        }
    };
    let used = cpu.since();

    let ok: u64 = results.iter().map(|r| r.ok).sum();
    let conflicts: u64 = results.iter().map(|r| r.conflicts).sum();
    let merges: u64 = results.iter().map(|r| r.merges).sum();
    let per_client: Vec<u64> = results.iter().map(|r| r.ok).collect();
    let max_late = results.iter().map(|r| r.late).fold(f64::MIN, f64::max);
    let d = opts.duration;
    let mut rec = Record::new();
    rec.set("peer", "durus-rs")
        .set("workload", mode.name())
        .set("target", opts.target.name())
        .set(
            "clients",
            match (opts.target, &opts.postgres) {
                (Target::Server, _) => "processes (through the server)",
                (Target::Embedded, None) => "threads (one process, one Hub)",
                (Target::Embedded, Some(_)) => "threads (one process, each its own PgStorage)",
            },
        )
        .set("c", opts.clients)
        .set("duration", d)
        .set("verified", verified)
        .set("max_late_s", max_late)
        .set("per_client", per_client)
        .set("server_rss_kb", server_rss_kb)
        .set(
            "client_rss_kb",
            procs::proc_status_kb(std::process::id(), "VmHWM"),
        )
        .set("storage", storage)
        .set("fsync", fsync)
        .set("variant", opts.variant.name())
        .set("conflicts", conflicts)
        .set("merges", merges)
        .set("wall_s", used.wall_s)
        .set("own_cpu_s", used.own_cpu_s)
        .set("foreign_cpu_s", used.foreign_cpu_s)
        .set("foreign_cpu_frac", used.foreign_cpu_frac);
    match mode {
        Mode::W4 => {
            rec.set("commits", ok).set("commits_per_s", ok as f64 / d);
        }
        Mode::W5 => {
            rec.set("increments", ok)
                .set("incs_per_s", ok as f64 / d)
                .set(
                    "conflict_rate",
                    conflicts as f64 / (ok + conflicts).max(1) as f64,
                )
                .set("attempts_per_s", (ok + conflicts) as f64 / d)
                .set("final_value", final_value);
        }
    }
    Ok(rec)
}

/// The fsync policy in effect: that of the file storage, or none at all.
fn fsync_name(fsync: FsyncPolicy, storage: procs::StorageKind) -> &'static str {
    match (storage, fsync) {
        (procs::StorageKind::Memory, _) => "none (memory storage)",
        (procs::StorageKind::External, _) => "unknown (external server)",
        (procs::StorageKind::Postgres, _) => "postgresql (durable commits)",
        (_, policy) => crate::tools::fsync_name(policy),
    }
}

type RunOutcome = (Vec<WorkerOutcome>, bool, Option<i64>);

fn run_on<M: CounterModel>(mode: Mode, opts: &RunOptions, address: &str) -> Result<RunOutcome> {
    setup::<M>(address, mode, opts.variant, opts.clients)?;
    let start_at = procs::wall_now() + 1.5 + 0.4 * opts.clients as f64;
    let deadline = Instant::now()
        + Duration::from_secs_f64((start_at - procs::wall_now()).max(0.0) + opts.duration)
        + WORKER_EXTRA_TIMEOUT;
    let args_for = |i: usize| -> Vec<String> {
        vec![
            "bench".into(),
            "worker".into(),
            "--mode".into(),
            mode.arg().into(),
            "--variant".into(),
            opts.variant.name().into(),
            "--server".into(),
            address.to_string(),
            "--idx".into(),
            i.to_string(),
            "--start-at".into(),
            format!("{start_at:.6}"),
            "--duration".into(),
            opts.duration.to_string(),
        ]
    };
    let outputs = procs::run_workers(&opts.exe, opts.clients, args_for, deadline)?;
    let results: Vec<WorkerOutcome> = outputs
        .iter()
        .map(|o| WorkerOutcome {
            idx: o.int("idx") as usize,
            ok: o.int("ok"),
            conflicts: o.int("conflicts"),
            merges: o.int("merges"),
            elapsed: o.float("elapsed"),
            late: o.float("late"),
        })
        .collect();
    let (verified, final_value) = match mode {
        Mode::W4 => {
            let mut all = true;
            for r in &results {
                let v = counter_value::<M>(address, opts.variant, &mode.key(r.idx))?;
                all &= v == r.ok as i64;
            }
            (all, None)
        }
        Mode::W5 => w5_check::<M>(&Connection::connect(address)?, opts.variant, &results)?,
    };
    Ok((results, verified, final_value))
}

/// W4/W5 with C threads in this process, one connection each: on the
/// file, sharing it through one [`Hub`]; on PostgreSQL, each with its own
/// `PgStorage`. The counters are checked on a new storage after the
/// clients closed theirs (the file closed and opened again).
fn run_in_process<M: CounterModel>(mode: Mode, opts: &RunOptions) -> Result<RunOutcome> {
    if let Some(url) = &opts.postgres {
        crate::tools::drop_postgres_schema(url)?;
        let open = || super::items::open_postgres(url);
        let results = run_threads::<M>(mode, opts, &open)?;
        return check_counters::<M>(mode, opts, open()?, results);
    }
    procs::remove_db(&opts.db);
    let open = || FileStorage::open_with(&opts.db, FileOptions::new().fsync(opts.fsync));
    let hub = Hub::new(open()?);
    let results = run_threads::<M>(mode, opts, &|| Ok(Box::new(hub.storage())))?;
    hub.close()?;
    drop(hub);
    check_counters::<M>(mode, opts, Box::new(open()?), results)
}

/// Makes the counters, then runs C threads from a common start instant,
/// each on a storage `client` gave it (all opened before the start).
fn run_threads<M: CounterModel>(
    mode: Mode,
    opts: &RunOptions,
    client: &dyn Fn() -> Result<Box<dyn Storage>>,
) -> Result<Vec<WorkerOutcome>> {
    {
        let conn = Connection::new(client()?);
        setup_on::<M>(&conn, mode, opts.variant, opts.clients)?;
        conn.abort()?;
        conn.with_storage(|s| s.close())?;
    }
    let storages = (0..opts.clients)
        .map(|_| client())
        .collect::<Result<Vec<_>>>()?;
    // T0: time for every thread to make its connection and load its counter.
    let start_at = procs::wall_now() + 0.2 + 0.02 * opts.clients as f64;
    std::thread::scope(|scope| {
        let handles: Vec<_> = storages
            .into_iter()
            .enumerate()
            .map(|(idx, storage)| {
                let worker = WorkerOptions {
                    mode,
                    variant: opts.variant,
                    server: String::new(),
                    idx,
                    oid: None,
                    start_at,
                    duration: opts.duration,
                    count: None,
                };
                scope.spawn(move || {
                    let conn = Connection::with_cache_size(storage, WORKER_CACHE_SIZE);
                    let outcome = work_on::<M>(&conn, &worker);
                    conn.with_storage(|s| s.close())?;
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| bench_error("a worker thread panicked"))?
            })
            .collect::<Result<Vec<WorkerOutcome>>>()
    })
}

/// Checks the counters on `storage`: each W4 counter equals its client's
/// successes, the W5 counter their sum. Closes `storage`.
fn check_counters<M: CounterModel>(
    mode: Mode,
    opts: &RunOptions,
    storage: Box<dyn Storage>,
    results: Vec<WorkerOutcome>,
) -> Result<RunOutcome> {
    let conn = Connection::new(storage);
    let (verified, final_value) = match mode {
        Mode::W4 => {
            let mut all = true;
            for r in &results {
                let v = counter_value_on::<M>(&conn, opts.variant, &mode.key(r.idx))?;
                all &= v == r.ok as i64;
            }
            (all, None)
        }
        Mode::W5 => w5_check::<M>(&conn, opts.variant, &results)?,
    };
    conn.abort()?;
    conn.with_storage(|s| s.close())?;
    Ok((results, verified, final_value))
}

/// W5's check on `conn`: the hot counter equals the sum of all successes;
/// with `btree-sum`, each key equals the successes that incremented it.
/// Returns whether it passed and the counter's value (the tree's total).
fn w5_check<M: CounterModel>(
    conn: &Connection,
    variant: Variant,
    results: &[WorkerOutcome],
) -> Result<(bool, Option<i64>)> {
    let v = counter_value_on::<M>(conn, variant, &Mode::W5.key(0))?;
    let total: u64 = results.iter().map(|r| r.ok).sum();
    let mut verified = v == total as i64;
    if variant == Variant::BtreeSum {
        let root: PRef<M::Root> = conn.root()?;
        let tree = M::keyed(&*root.read()?);
        let tree = tree.ok_or_else(|| bench_error("the tree is missing from the root"))?;
        verified &= keyed::values(&tree)? == keyed::expected(results);
    }
    Ok((verified, Some(v)))
}
