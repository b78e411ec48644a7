//! What the item workloads (W1, W2, W3, W6, W7) share: the object shapes
//! of the benchmark definitions (Parent, Item, the root holding `"parent"`
//! and `"items"`; see `docs/PERFORMANCE.md`), the storage a run opens (the
//! file directly, or a server child serving it), and the fields every
//! result line carries. W2 and W3 count loads with
//! `durus_core::storage::Counting`.

use super::json::Record;
use super::procs::{self, bench_error, CpuSnapshot, ServerProcess};
use durus_core::error::{Error, Result};
use durus_core::storage::{ClientStorage, FileOptions, FileStorage};
use durus_core::{BTree, Connection, FsyncPolicy, PRef, Persistent, Storage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A bound on every timed loop besides its time bound (as the peer's).
pub const MAX_OPS: u64 = 10_000_000;

/// The time bound of every timed loop: a run that needs longer stops
/// early and fails its check.
pub const MAX_LOOP_TIME: Duration = Duration::from_secs(1800);

/// The name every item's parent has.
pub const PARENT_NAME: &str = "parent";

/// The Parent: one field, `name` = `"parent"`.
#[derive(Persistent, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[persistent(class = "durus_bench.Parent")]
pub struct Parent {
    pub name: String,
}

/// Item(i): `n` = i, `s` = S(i), `parent` = the shared Parent.
#[derive(Persistent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[persistent(class = "durus_bench.Item")]
pub struct Item {
    pub n: u64,
    pub s: String,
    pub parent: PRef<Parent>,
}

/// The Container: Durus's BTree with nodes of minimum degree 16.
pub type Items = BTree<u64, PRef<Item>>;

/// The root of an item database: `"parent"` and `"items"`.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "durus_bench.ItemsRoot")]
pub struct ItemsRoot {
    #[serde(default)]
    pub parent: Option<PRef<Parent>>,
    #[serde(default)]
    pub items: Option<Items>,
}

/// The root's parent and container, or an error naming what is missing.
pub fn parent_and_items(root: &PRef<ItemsRoot>) -> Result<(PRef<Parent>, Items)> {
    let r = root.read()?;
    let parent = r
        .parent
        .clone()
        .ok_or_else(|| bench_error("the root has no \"parent\": not a W1 database"))?;
    let items = r
        .items
        .clone()
        .ok_or_else(|| bench_error("the root has no \"items\": not a W1 database"))?;
    Ok((parent, items))
}

/// Where a run's storage is: the file itself, or a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The benchmark process opens the file (`emb`).
    #[value(name = "emb")]
    Embedded,
    /// A storage server serves the file (`srv`).
    #[value(name = "srv")]
    Server,
}

impl Target {
    /// The name in result lines.
    pub fn name(self) -> &'static str {
        match self {
            Target::Embedded => "emb",
            Target::Server => "srv",
        }
    }
}

/// What every item workload is given besides its own parameters.
#[derive(Debug, Clone)]
pub struct Common {
    /// The database file (unused when `postgres` is given).
    pub db: PathBuf,
    /// A PostgreSQL database, by its URL, to use instead of the file
    /// (embedded: a `PgStorage` in this process; `srv`: a `durus serve
    /// --storage URL` child).
    pub postgres: Option<String>,
    /// The fsync policy of the file storage (embedded, or the server the
    /// run starts).
    pub fsync: FsyncPolicy,
    /// A running server (HOST:PORT) to use instead of starting one.
    pub server: Option<String>,
    /// The `durus` binary, which runs the server child.
    pub exe: PathBuf,
}

pub use crate::tools::fsync_name;

/// The run's server: the one given, or a child serving `common.db` (or
/// the PostgreSQL database of `common.postgres`).
pub fn start_server(common: &Common) -> Result<ServerProcess> {
    match (&common.server, &common.postgres) {
        (Some(address), _) => ServerProcess::external(address),
        (None, Some(url)) => ServerProcess::start_postgres(&common.exe, url),
        (None, None) => {
            let server = ServerProcess::start(&common.exe, &common.db, common.fsync)?;
            if server.storage() != procs::StorageKind::File {
                let mut server = server;
                server.stop();
                return Err(bench_error("the server cannot serve a file"));
            }
            Ok(server)
        }
    }
}

/// Opens the storage of a run: the file with the run's fsync policy, or a
/// client of `server`.
pub fn open_storage(
    target: Target,
    common: &Common,
    server: Option<&ServerProcess>,
) -> Result<Box<dyn Storage>> {
    match (target, server) {
        (Target::Server, Some(server)) => {
            Ok(Box::new(ClientStorage::connect_to(server.address())?))
        }
        (Target::Server, None) => Err(bench_error("a server run without a server")),
        (Target::Embedded, _) => match &common.postgres {
            Some(url) => open_postgres(url),
            None => Ok(Box::new(open_file(&common.db, common.fsync)?)),
        },
    }
}

/// A new `PgStorage` on the database at `url` (an error saying how to
/// build with PostgreSQL support when this build has none).
pub fn open_postgres(url: &str) -> Result<Box<dyn Storage>> {
    crate::tools::open_storage(
        &crate::tools::Target::Postgres(url.to_string()),
        FsyncPolicy::Never,
    )
}

/// Makes the run's database empty: removes the file, or drops the durus
/// tables of the PostgreSQL database (its next storage makes them again).
pub fn fresh_database(common: &Common) -> Result<()> {
    match &common.postgres {
        Some(url) => crate::tools::drop_postgres_schema(url),
        None => {
            procs::remove_db(&common.db);
            Ok(())
        }
    }
}

/// A record with the fields every item workload's line has, for a run on
/// `common`'s database (`fsync` says what applies to PostgreSQL there).
pub fn run_record(workload: &str, common: &Common, cpu: &CpuSnapshot) -> Record {
    let mut rec = record(workload, Some(common.fsync), cpu);
    rec.set("storage", storage_name(common));
    if common.postgres.is_some() {
        rec.set("fsync", "postgresql (durable commits)");
    }
    rec
}

/// What the run's database is kept in, for result lines.
pub fn storage_name(common: &Common) -> &'static str {
    match common.postgres {
        Some(_) => procs::StorageKind::Postgres.name(),
        None => procs::StorageKind::File.name(),
    }
}

/// The file storage at `path` with `fsync`.
pub fn open_file(path: &Path, fsync: FsyncPolicy) -> Result<FileStorage> {
    FileStorage::open_with(path, FileOptions::new().fsync(fsync))
}

/// Ends the connection's transaction and closes its storage cleanly.
pub fn close(conn: Connection) -> Result<()> {
    conn.abort()?;
    conn.with_storage(|s| s.close())
}

/// The size of a file in bytes.
pub fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// This process's peak resident set (VmHWM, KiB).
pub fn self_peak_rss_kb() -> Option<u64> {
    procs::proc_status_kb(std::process::id(), "VmHWM")
}

/// Starts a new peak for VmHWM (Linux: writing 5 to clear_refs), so that
/// the peak of one phase can be read. Best effort.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's resident set now (VmRSS, KiB).
pub fn self_rss_kb() -> Option<u64> {
    procs::proc_status_kb(std::process::id(), "VmRSS")
}

/// A record with the fields every item workload's line has.
pub fn record(workload: &str, fsync: Option<FsyncPolicy>, cpu: &CpuSnapshot) -> Record {
    let used = cpu.since();
    let mut rec = Record::new();
    rec.set("peer", "durus-rs")
        .set("workload", workload)
        .set("fsync", fsync.map_or("none (read only)", fsync_name))
        .set("wall_s", used.wall_s)
        .set("own_cpu_s", used.own_cpu_s)
        .set("foreign_cpu_s", used.foreign_cpu_s)
        .set("foreign_cpu_frac", used.foreign_cpu_frac);
    rec
}

/// Checks a count parameter.
pub fn check_count(name: &str, value: u64, max: u64) -> Result<()> {
    if value == 0 || value > max {
        return Err(bench_error(format!("--{name} must be between 1 and {max}")));
    }
    Ok(())
}

/// An error for a failed check, with the workload's name.
pub fn check_failed(workload: &str) -> Error {
    bench_error(format!("{workload} verification failed"))
}
