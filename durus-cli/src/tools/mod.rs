//! The work behind the `durus` command: serve, stop, pack, convert, and
//! tools that look inside a database (census, show, referrers). The binary
//! only parses arguments and calls these.

mod convert;
mod inspect;
mod json;
mod postgres;

pub use convert::convert;
pub use inspect::{census, referrers, show, traverse, ClassCount};
pub use json::record_json;
pub use postgres::{
    drop_schema as drop_postgres_schema, is_postgres_url, refuse_connection_string,
    verify_postgres, POSTGRES_MISSING,
};

use durus_core::error::{Error, Result};
use durus_core::hub::Hub;
use durus_core::internals;
use durus_core::internals::protocol::{QuitRequest, Request};
use durus_core::server::Address;
use durus_core::server::{Server, ServerConfig};
pub use durus_core::storage::FsyncPolicy;

use durus_core::error::StorageError;
use durus_core::storage::file;
use durus_core::storage::{ClientStorage, FileOptions, FileStorage, Storage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The command's `--fsync` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// Every commit is on disk before it is acknowledged.
    Always,
    /// Never fsync, as Durus 4.3 does.
    Never,
}

impl From<Fsync> for FsyncPolicy {
    fn from(fsync: Fsync) -> FsyncPolicy {
        match fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Never => FsyncPolicy::Never,
        }
    }
}

/// The name of a policy on the command line and in result lines.
pub fn fsync_name(policy: FsyncPolicy) -> &'static str {
    match policy {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Never => "never",
    }
}

/// A progress line for long work, `LABEL: COUNT`, redrawn on stderr at
/// most five times a second, and only when stderr is a terminal; cleared
/// when done or dropped.
pub fn progress(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5))
        .with_finish(ProgressFinish::AndClear);
    if let Ok(style) = ProgressStyle::with_template("{msg}: {pos}") {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}

/// A database to work on: a file, a PostgreSQL database, or a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A storage file, opened directly (no server may have it open).
    File(PathBuf),
    /// A PostgreSQL database, by its URL (`postgresql://...`); needs the
    /// `postgres` feature.
    Postgres(String),
    /// A storage server.
    Server(Address),
}

impl Target {
    /// A storage named on the command line: a `postgresql://` (or
    /// `postgres://`) URL, otherwise a file path.
    pub fn storage(name: &std::ffi::OsStr) -> Target {
        match name.to_str() {
            Some(url) if is_postgres_url(url) => Target::Postgres(url.to_string()),
            _ => Target::File(PathBuf::from(name)),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Postgres(url) => write!(f, "{}", postgres::redact(url)),
            Target::Server(address) => write!(f, "{address}"),
        }
    }
}

/// Opens the storage of `target` for a tool that reads it: a file that
/// does not exist is an error (see [`require_file`]), never a new database.
pub fn open_existing(target: &Target, fsync: FsyncPolicy) -> Result<Box<dyn Storage>> {
    if let Target::File(path) = target {
        require_file(path)?;
    }
    open_storage(target, fsync)
}

/// `Ok` when `path` exists; otherwise an error that names it, with a hint
/// when it looks like a server's HOST:PORT.
pub fn require_file(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut why = "no such file (a tool that reads a database never creates one)".to_string();
    if let Some((host, port)) = host_port(path) {
        why.push_str(&format!(
            "; to reach the server at {host}:{port}, give --host {host} --port {port}"
        ));
    }
    Err(Error::io(
        path.display().to_string(),
        std::io::Error::new(std::io::ErrorKind::NotFound, why),
    ))
}

/// The host and port of a name like `host:port` (no `/`, a numeric port).
fn host_port(path: &Path) -> Option<(String, u16)> {
    let text = path.to_str()?;
    if text.contains('/') {
        return None;
    }
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Opens the storage of `target`.
pub fn open_storage(target: &Target, fsync: FsyncPolicy) -> Result<Box<dyn Storage>> {
    match target {
        Target::Server(address) => Ok(Box::new(ClientStorage::connect_to(address)?)),
        Target::File(path) => open_file(path, fsync),
        Target::Postgres(url) => postgres::open(url),
    }
}

fn open_file(path: &std::path::Path, fsync: FsyncPolicy) -> Result<Box<dyn Storage>> {
    Ok(Box::new(FileStorage::open_with(
        path,
        FileOptions::new().fsync(fsync),
    )?))
}

/// What `durus serve` does.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The storage file; `None` (and no `postgres`) serves a new temporary
    /// database.
    pub file: Option<PathBuf>,
    /// A PostgreSQL database to serve instead of a file, by its URL
    /// (needs the `postgres` feature). Several servers may serve one.
    pub postgres: Option<String>,
    /// When commits to a file are made durable (PostgreSQL makes every
    /// commit durable itself).
    pub fsync: FsyncPolicy,
    /// Listening address, timeouts, background pack threshold.
    pub config: ServerConfig,
    /// Stop gracefully on SIGTERM and SIGINT, as on `durus stop` (the
    /// command's choice; a server inside another program leaves its
    /// signals alone).
    pub stop_on_signals: bool,
}

/// Serves a storage until a client sends `Q` (or, with
/// `stop_on_signals`, until SIGTERM or SIGINT). Writes `serving on ADDRESS`
/// to `announce` once listening (the real port when port 0 was asked for).
/// Without a file, as Durus does, it serves a new temporary file, removed
/// when the server stops.
pub fn serve(options: ServeOptions, announce: &mut dyn Write) -> Result<()> {
    if let Some(url) = &options.postgres {
        let storage = postgres::open(url)?;
        return serve_storage(storage, options, announce);
    }
    let (path, temporary) = match &options.file {
        Some(path) => (path.clone(), false),
        None => (temporary_file(), true),
    };
    let served = serve_file(&path, options, announce);
    if temporary {
        for suffix in ["", ".pack", ".prepack"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    served
}

fn serve_file(path: &Path, options: ServeOptions, announce: &mut dyn Write) -> Result<()> {
    let storage = open_file(path, options.fsync)?;
    serve_storage(storage, options, announce)
}

fn serve_storage(
    storage: Box<dyn Storage>,
    options: ServeOptions,
    announce: &mut dyn Write,
) -> Result<()> {
    let stop_on_signals = options.stop_on_signals;
    let server = Server::bind(Hub::from_boxed(storage), options.config)?;
    let signals = if stop_on_signals {
        Some(stop_on_signal(server.handle())?)
    } else {
        None
    };
    let address = server.local_address()?;
    writeln!(announce, "serving on {address}")
        .and_then(|()| announce.flush())
        .map_err(Error::Io)?;
    let served = server.serve();
    if let Some(signals) = signals {
        signals.close();
    }
    served
}

/// Stops the server through `handle` when SIGTERM or SIGINT arrives, so
/// that sessions end, the file is closed and the process exits 0. Returns
/// the handle that ends the watching thread.
fn stop_on_signal(
    handle: durus_core::server::ServerHandle,
) -> Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::io("watch SIGTERM and SIGINT", e))?;
    let closer = signals.handle();
    std::thread::Builder::new()
        .name("durus-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!("signal {signal}: stopping");
                handle.stop();
            }
        })
        .map_err(|e| Error::io("start the signal thread", e))?;
    Ok(closer)
}

fn temporary_file() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("durus-{}-{nanos}.durus", std::process::id()))
}

/// Checks the structure of a storage file and writes what it found to `out`.
/// Returns whether the file is sound. On a file a server is writing, it
/// checks up to the last complete transaction and says so.
pub fn verify(path: &Path, out: &mut dyn Write) -> Result<bool> {
    require_file(path)?;
    let progress = progress("records");
    let report = file::verify_with_progress(path, &mut |n| progress.set_position(n))?;
    progress.finish_and_clear();
    let w = |e| Error::Io(e);
    writeln!(
        out,
        "{}: {} bytes, {} records in the initial transaction, {} map words, {} holes, \
         {} later transactions, {} objects, {} references ({} dangling)",
        path.display(),
        report.file_len,
        report.initial_records,
        report.map_words,
        report.holes,
        report.transactions,
        report.objects,
        report.refs,
        report.dangling
    )
    .map_err(w)?;
    if let Some(offset) = report.writer_at_work {
        writeln!(
            out,
            "a writer (a server?) holds the lock and is writing a transaction at offset \
             {offset}: checked up to it"
        )
        .map_err(w)?;
    }
    for problem in &report.problems {
        writeln!(out, "problem at {problem}").map_err(w)?;
    }
    if report
        .problems
        .iter()
        .any(|p| p.message.starts_with("torn last transaction"))
    {
        writeln!(
            out,
            "no writer holds the lock: `durus repair {}` cuts the torn transaction",
            path.display()
        )
        .map_err(w)?;
    }
    writeln!(out, "{}", if report.is_ok() { "ok" } else { "NOT OK" }).map_err(w)?;
    Ok(report.is_ok())
}

/// Truncates a torn last transaction of a storage file, first saying what
/// it will cut (once it holds the writer's lock: a file a server has open
/// is refused before anything is said). Returns whether anything was cut.
pub fn repair(path: &Path, out: &mut dyn Write) -> Result<bool> {
    require_file(path)?;
    let w = |e| Error::Io(e);
    let shown = path.display();
    let report = file::repair_announced(path, &mut |cut| {
        writeln!(
            out,
            "{shown}: cutting {} bytes at offset {}: {}",
            cut.bytes, cut.offset, cut.reason
        )
        .map_err(w)
    })
    .map_err(|e| match e {
        Error::Storage(StorageError::Locked(_)) => Error::Storage(StorageError::Other(format!(
            "{shown} is locked by another writer (a server?): nothing was cut; stop the \
             writer first (`durus verify {shown}` checks a file a server is writing)"
        ))),
        e => e,
    })?;
    match report.cut {
        Some(_) => writeln!(out, "{shown}: now {} bytes", report.file_len).map_err(w)?,
        None => writeln!(out, "{shown}: no torn transaction, nothing to cut").map_err(w)?,
    }
    Ok(report.cut.is_some())
}

/// Asks the server at `address` to stop, and waits (up to `wait`) until it
/// no longer accepts connections. `Ok(false)` when no server was running.
pub fn stop(address: &Address, wait: Duration) -> Result<bool> {
    let Ok(mut stream) = internals::connect(address) else {
        return Ok(false);
    };
    let mut out = Vec::new();
    Request::Quit(QuitRequest).encode(&mut out);
    stream
        .write_all(&out)
        .map_err(|e| Error::io(format!("send quit to {address}"), e))?;
    drop(stream);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if internals::connect(address).is_err() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::io(
        format!("stop {address}"),
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "server still accepting connections",
        ),
    ))
}

/// Packs the storage of `target` and says what it did to `out`: for a
/// file, its size before and after and where the old file is kept.
pub fn pack(target: &Target, out: &mut dyn Write) -> Result<()> {
    let before = match target {
        Target::File(path) => {
            require_file(path)?;
            std::fs::metadata(path).ok().map(|m| m.len())
        }
        _ => None,
    };
    let mut storage = open_existing(target, FsyncPolicy::Always)?;
    storage.pack()?;
    storage.close()?;
    let w = |e| Error::Io(e);
    match target {
        Target::File(path) => {
            let after = std::fs::metadata(path).map(|m| m.len()).ok();
            let mut prepack = path.clone().into_os_string();
            prepack.push(".prepack");
            writeln!(
                out,
                "packed {}: {} bytes before, {} after; the old file is kept as {}",
                path.display(),
                before.map_or("?".into(), |n| n.to_string()),
                after.map_or("?".into(), |n| n.to_string()),
                Path::new(&prepack).display()
            )
            .map_err(w)
        }
        Target::Server(address) => {
            writeln!(out, "packed the database served at {address}").map_err(w)
        }
        Target::Postgres(_) => writeln!(out, "packed {target}").map_err(w),
    }
}
