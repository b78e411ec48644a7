//! The work behind the `durus` command: serve, stop, pack, and tools that
//! look inside a database (census, show, referrers). The binary only parses
//! arguments and calls these.

mod inspect;
mod json;
mod progress;

pub use inspect::{census, referrers, show, traverse, ClassCount};
pub use json::record_json;
pub use progress::Progress;

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::net::Address;
use crate::protocol::{QuitRequest, Request};
use crate::server::{Server, ServerConfig};
pub use crate::storage::FsyncPolicy;

use crate::storage::{ClientStorage, FileOptions, FileStorage, MemoryStorage, Storage};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A database to work on: a file, or a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A storage file, opened directly (no server may have it open).
    File(PathBuf),
    /// A storage server.
    Server(Address),
}

/// Opens the storage of `target`.
pub fn open_storage(target: &Target, fsync: FsyncPolicy) -> Result<Box<dyn Storage>> {
    match target {
        Target::Server(address) => Ok(Box::new(ClientStorage::connect_to(address)?)),
        Target::File(path) => open_file(path, fsync),
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
    /// The storage file; `None` serves a new temporary database.
    pub file: Option<PathBuf>,
    /// When commits are made durable.
    pub fsync: FsyncPolicy,
    /// Listening address, timeouts, background pack threshold.
    pub config: ServerConfig,
}

/// Serves a storage until a client sends `Q`. Writes `serving on ADDRESS`
/// to `announce` once listening (the real port when port 0 was asked for).
pub fn serve(options: ServeOptions, announce: &mut dyn Write) -> Result<()> {
    let storage: Box<dyn Storage> = match &options.file {
        Some(path) => open_file(path, options.fsync)?,
        None => Box::new(MemoryStorage::new()),
    };
    let server = Server::bind(Hub::from_boxed(storage), options.config)?;
    let address = server.local_address()?;
    writeln!(announce, "serving on {address}")
        .and_then(|()| announce.flush())
        .map_err(Error::Io)?;
    server.serve()
}

/// Asks the server at `address` to stop, and waits (up to `wait`) until it
/// no longer accepts connections. `Ok(false)` when no server was running.
pub fn stop(address: &Address, wait: Duration) -> Result<bool> {
    let Ok(mut stream) = address.connect() else {
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
        if address.connect().is_err() {
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

/// Packs the storage of `target`.
pub fn pack(target: &Target) -> Result<()> {
    let mut storage = open_storage(target, FsyncPolicy::Always)?;
    storage.pack()?;
    storage.close()
}
