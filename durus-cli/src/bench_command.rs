//! `durus bench`: its subcommands' arguments and how each runs.

use crate::FileState;
use clap::{Args, Subcommand};
use durus_cli::bench::model::Model;
use durus_cli::bench::{self, Mode, RunOptions, Variant, WorkerOptions};
use durus_cli::tools::{Fsync, FsyncPolicy, Target};
use durus_core::server::{DEFAULT_HOST, DEFAULT_PORT};
use durus_core::Oid;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// W4: C clients commit to their own counters for D seconds.
    W4(CounterRunArgs),
    /// W5: C clients increment one hot counter for D seconds.
    W5(CounterRunArgs),
    /// A bare TCP round trip on loopback (the bound of server workloads).
    Pingpong {
        #[arg(long, default_value_t = 100_000)]
        rounds: u64,
        #[arg(long, default_value_t = 9)]
        request: usize,
        #[arg(long, default_value_t = 120)]
        reply: usize,
        /// Connections doing round trips at once.
        #[arg(long, default_value_t = 1)]
        pairs: usize,
    },
    /// W1: insert N items, committing every B (embedded or through a server).
    W1(W1Args),
    /// W2: cold read of the items W1 wrote, in key order.
    W2(W2Args),
    /// W3: K random point loads, through a server or on the file in this process.
    W3(W3Args),
    /// W6's build: W1 embedded with N = 1,000,000 and B = 10,000.
    W6build(W6BuildArgs),
    /// W6: open a large file and load its root.
    W6open(W6OpenArgs),
    /// W6: pack a large file once.
    W6pack(W6PackArgs),
    /// W7: delete every odd item of a copy of the W1 file, then pack it.
    W7(W7Args),
    /// One W4/W5 client process (started by `w4` and `w5`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Args)]
pub struct CounterRunArgs {
    /// srv (C client processes through a server, the definition's) or emb
    /// (C threads, one connection each, on the file in this process).
    #[arg(long, value_enum, default_value = "srv")]
    target: bench::items::Target,
    /// C: the number of clients (processes, or threads with emb).
    #[arg(long)]
    c: usize,
    /// D: the timed region in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The database file (removed first).
    #[arg(long, required_unless_present = "storage", conflicts_with = "storage")]
    db: Option<PathBuf>,
    /// The storage: a file, or a PostgreSQL database's postgresql:// URL
    /// (its durus tables are dropped first).
    #[arg(long)]
    storage: Option<std::ffi::OsString>,
    /// merge (a `#[merge(sum)]` counter), abort-retry (a plain counter) or
    /// btree-sum (W5: 16 keys of one BTree of per-key counters).
    #[arg(long, value_enum, default_value_t = Variant::AbortRetry)]
    variant: Variant,
    /// The fsync policy of the file storage (embedded, or the server the run starts).
    #[arg(long, value_enum, default_value = "never")]
    fsync: Fsync,
    /// Use this running server (HOST:PORT) instead of starting one.
    #[arg(long)]
    server: Option<String>,
}

/// What every item workload takes.
#[derive(Args)]
pub struct ItemArgs {
    /// The database file.
    #[arg(long, required_unless_present = "storage", conflicts_with = "storage")]
    db: Option<PathBuf>,
    /// The storage: a file, or a PostgreSQL database's postgresql:// URL
    /// (W1 drops its durus tables first). W1-W3 only.
    #[arg(long)]
    storage: Option<std::ffi::OsString>,
    /// The fsync policy of the file storage (embedded, or the server the
    /// run starts). never is Durus 4.3's behaviour, the like-for-like one.
    #[arg(long, value_enum, default_value = "never")]
    fsync: Fsync,
    /// Use this running server (HOST:PORT) instead of starting one.
    #[arg(long)]
    server: Option<String>,
}

#[derive(Args)]
pub struct W1Args {
    #[arg(long, value_enum)]
    target: bench::items::Target,
    /// N: items inserted.
    #[arg(long)]
    n: u64,
    /// B: items per commit.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct W2Args {
    #[arg(long, value_enum)]
    target: bench::items::Target,
    /// N: the items W1 wrote.
    #[arg(long)]
    n: u64,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct W3Args {
    /// srv (through a server, the definition's) or emb (the file opened
    /// in this process).
    #[arg(long, value_enum, default_value = "srv")]
    target: bench::items::Target,
    /// N: the items W1 wrote.
    #[arg(long)]
    n: u64,
    /// K: distinct items loaded.
    #[arg(long)]
    k: u64,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct W6BuildArgs {
    #[arg(long, default_value_t = 1_000_000)]
    n: u64,
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct W6OpenArgs {
    #[arg(long)]
    n: u64,
    /// unpacked (as built) or packed: a label for the file's state.
    #[arg(long, value_enum)]
    variant: FileState,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct W6PackArgs {
    #[arg(long)]
    n: u64,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct W7Args {
    /// The W1-emb file (copied to --db, not changed).
    #[arg(long)]
    src: PathBuf,
    /// N: the items in it.
    #[arg(long)]
    n: u64,
    /// Deletions per commit.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    #[command(flatten)]
    common: ItemArgs,
}

#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    mode: Mode,
    /// The server (HOST:PORT or socket path).
    #[arg(long, conflicts_with = "port")]
    server: Option<String>,
    /// The server's port on 127.0.0.1 (as the Python harness passes it).
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    idx: usize,
    /// The start instant T0, in seconds since the Unix epoch.
    #[arg(long)]
    start_at: f64,
    #[arg(long)]
    duration: f64,
    #[arg(long, value_enum, default_value_t = Variant::AbortRetry)]
    variant: Variant,
    /// The counter's oid, instead of the root's `c<idx>` or `hot`.
    #[arg(long)]
    oid: Option<u64>,
    /// Stop after this many successful commits.
    #[arg(long)]
    count: Option<u64>,
}

pub fn bench(command: BenchCommand) -> durus_core::Result<ExitCode> {
    match command {
        BenchCommand::W4(a) => return counter_run(Mode::W4, a),
        BenchCommand::W5(a) => return counter_run(Mode::W5, a),
        BenchCommand::Pingpong {
            rounds,
            request,
            reply,
            pairs,
        } => println!(
            "RESULT {}",
            bench::pingpong::run(rounds, request, reply, pairs)?
        ),
        BenchCommand::W1(a) => {
            let opts = bench::w1::Options {
                target: a.target,
                n: a.n,
                batch: a.batch,
                workload: "W1".into(),
                common: item_common(a.common, true)?,
            };
            return report(bench::w1::run(&opts)?);
        }
        BenchCommand::W6build(a) => {
            let opts = bench::w1::Options {
                target: bench::items::Target::Embedded,
                n: a.n,
                batch: a.batch,
                workload: "W6build".into(),
                common: item_common(a.common, false)?,
            };
            return report(bench::w1::run(&opts)?);
        }
        BenchCommand::W2(a) => {
            let opts = bench::w2::Options {
                target: a.target,
                n: a.n,
                common: item_common(a.common, true)?,
            };
            return report(bench::w2::run(&opts)?);
        }
        BenchCommand::W3(a) => {
            let opts = bench::w3::Options {
                target: a.target,
                n: a.n,
                k: a.k,
                common: item_common(a.common, true)?,
            };
            return report(bench::w3::run(&opts)?);
        }
        BenchCommand::W6open(a) => {
            let opts = bench::w6::Options {
                n: a.n,
                variant: a.variant.name().into(),
                common: item_common(a.common, false)?,
            };
            return report(bench::w6::open(&opts)?);
        }
        BenchCommand::W6pack(a) => {
            let opts = bench::w6::Options {
                n: a.n,
                variant: String::new(),
                common: item_common(a.common, false)?,
            };
            return report(bench::w6::pack(&opts)?);
        }
        BenchCommand::W7(a) => {
            let opts = bench::w7::Options {
                src: a.src,
                n: a.n,
                batch: a.batch,
                common: item_common(a.common, false)?,
            };
            return report(bench::w7::run(&opts)?);
        }
        BenchCommand::Worker(a) => {
            let server = match (a.server, a.port) {
                (Some(s), _) => s,
                (None, Some(port)) => format!("127.0.0.1:{port}"),
                (None, None) => format!("{DEFAULT_HOST}:{DEFAULT_PORT}"),
            };
            let opts = WorkerOptions {
                mode: a.mode,
                variant: a.variant,
                server,
                idx: a.idx,
                oid: a.oid.map(Oid),
                start_at: a.start_at,
                duration: a.duration,
                count: a.count,
            };
            let outcome = bench::counters::run_worker::<Model>(&opts)?;
            println!("RESULT {}", outcome.record());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The file or the PostgreSQL URL of `--db FILE` or `--storage FILE|URL`.
fn bench_storage(
    db: Option<PathBuf>,
    storage: Option<std::ffi::OsString>,
) -> durus_core::Result<(PathBuf, Option<String>)> {
    match (db, storage.as_deref().map(Target::storage)) {
        (Some(db), None) => Ok((db, None)),
        (None, Some(Target::File(path))) => Ok((path, None)),
        (None, Some(Target::Postgres(url))) => Ok((PathBuf::new(), Some(url))),
        _ => Err(bench::procs::bench_error(
            "give the database as --db FILE or --storage FILE|postgresql://...",
        )),
    }
}

/// The common options of W1-W3 (`postgres_ok`) or W6/W7 (files only).
fn item_common(a: ItemArgs, postgres_ok: bool) -> durus_core::Result<bench::items::Common> {
    let (db, postgres) = bench_storage(a.db, a.storage)?;
    if postgres.is_some() && !postgres_ok {
        return Err(bench::procs::bench_error(
            "this workload runs on a file only",
        ));
    }
    let fsync = a.fsync.into();
    if postgres.is_some() {
        eprintln!("durus bench: PostgreSQL (each commit durable when acknowledged)");
    } else {
        eprintln!(
            "durus bench: fsync {} ({})",
            bench::items::fsync_name(fsync),
            match fsync {
                FsyncPolicy::Never => "as Durus 4.3: the like-for-like comparison",
                FsyncPolicy::Always => "every commit is on disk before it returns",
            }
        );
    }
    Ok(bench::items::Common {
        db,
        postgres,
        fsync,
        server: a.server,
        exe: std::env::current_exe().map_err(durus_core::Error::Io)?,
    })
}

/// Prints the result line; fails when the run checked and failed.
fn report(rec: bench::json::Record) -> durus_core::Result<ExitCode> {
    println!("RESULT {rec}");
    if rec.verified() == Some(false) {
        eprintln!("durus: verification failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn counter_run(mode: Mode, a: CounterRunArgs) -> durus_core::Result<ExitCode> {
    let exe = std::env::current_exe().map_err(durus_core::Error::Io)?;
    let (db, postgres) = bench_storage(a.db, a.storage)?;
    let opts = RunOptions {
        target: a.target,
        clients: a.c,
        duration: a.duration,
        db,
        postgres,
        variant: a.variant,
        fsync: a.fsync.into(),
        server: a.server,
        exe,
    };
    let rec = match mode {
        Mode::W4 => bench::w4::run::<Model>(&opts)?,
        Mode::W5 => bench::w5::run::<Model>(&opts)?,
    };
    println!("RESULT {rec}");
    let verified = rec.verified() == Some(true);
    if !verified {
        eprintln!("durus: {} verification failed", mode.name());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
