//! The pool of sessions a hub's point loads run on (see
//! [`Storage::loader`](crate::Storage::loader)).

use super::link::Link;
use crate::error::{Error, Result, StorageError};
use crate::oid::Oid;
use crate::storage::Loader;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The load sessions a [`PgStorage`] hands to a hub.
pub(super) struct PgLoader {
    pub(super) links: Vec<Mutex<Link>>,
    /// Where the next load starts looking for a free session.
    pub(super) next: AtomicUsize,
    pub(super) as_of: Arc<AtomicI64>,
}

impl Loader for PgLoader {
    fn as_of(&self) -> u64 {
        self.as_of.load(Ordering::SeqCst) as u64
    }

    fn load(&self, oid: Oid) -> Result<Option<(u64, Vec<u8>)>> {
        let Ok(key) = i64::try_from(oid.0) else {
            return Ok(None);
        };
        let n = self.links.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // A free session if there is one, else wait for the next in turn.
        let mut link = (0..n)
            .find_map(|i| self.links.get((start + i) % n)?.try_lock().ok())
            .or_else(|| self.links.get(start % n).map(crate::lock))
            .ok_or(Error::Storage(StorageError::Closed))?;
        let found = link.read(&format!("load oid {oid}"), |s| s.load(key))?;
        Ok(found.map(|(tid, record)| (tid as u64, record)))
    }
}
