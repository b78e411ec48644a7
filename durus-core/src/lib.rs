//! durus-core: a persistent object system in the spirit of Durus.
//!
//! Plain structs derive [`Persistent`], live in a graph of objects that
//! loads lazily (ghosts) and is cached by identity, and are committed or
//! aborted in transactions against a storage.
//!
//! ```
//! use durus_core::{Connection, MemoryStorage, PRef, Persistent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Persistent, Serialize, Deserialize, Default)]
//! struct Library {
//!     books: Vec<PRef<Book>>,
//! }
//!
//! #[derive(Persistent, Serialize, Deserialize)]
//! struct Book {
//!     title: String,
//! }
//!
//! let conn = Connection::new(MemoryStorage::new());
//! let root: PRef<Library> = conn.root()?;
//! root.write()?.books.push(PRef::new(Book { title: "Dune".into() }));
//! conn.commit()?;
//! assert_eq!(root.read()?.books[0].read()?.title, "Dune");
//! # Ok::<(), durus_core::Error>(())
//! ```

#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)
)]

// The derive names paths under `::durus_core`, also inside this crate.
extern crate self as durus_core;

mod cache;
mod cbor_de;
pub mod collections;
pub mod connection;
mod database;
mod encoding;
pub mod error;
pub mod hub;
#[doc(hidden)]
pub mod internals;
mod net;
pub mod oid;
pub mod persistent;
mod protocol;
mod record;
pub mod schema;
pub mod server;
pub mod storage;

pub use collections::{BTree, PersistentDict, PersistentList, PersistentSet};
pub use connection::Connection;
pub use database::{Database, DatabaseOptions};
pub use durus_derive::Persistent;
pub use error::{ConflictDetail, ConflictError, ConflictKind, ConflictReason, Error, Result};
pub use hub::Hub;
pub use oid::Oid;
pub use persistent::{per_key, MergeConflict, PRef, Persistent, Status};
#[cfg(feature = "postgres")]
pub use storage::PgStorage;
pub use storage::{ClientStorage, FileOptions, FileStorage, FsyncPolicy, MemoryStorage, Storage};

/// The instant `timeout` from now; a timeout too large to add (a caller's
/// "forever") is a century, not a panic.
pub(crate) fn deadline(timeout: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Locks `m`, also when a thread panicked while holding it. A panic in
/// one session or commit must not take every later one down: each mutex
/// of the crate guards state that is updated in steps that leave it
/// consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Paths used by the code `#[derive(Persistent)]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::persistent::merge;
    pub use crate::persistent::per_key;
    pub use serde;
}
