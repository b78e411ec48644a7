//! `MemoryStorage`: records in a map, for tests and scratch work.

use super::{reachable_oids, CommitHandler, Durability, Storage};
use crate::error::{Error, Result};
use crate::oid::Oid;
use std::collections::HashMap;

/// Keeps every record in memory. Nothing survives the process.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList};
///
/// let storage = MemoryStorage::new();
/// assert!(storage.is_empty());
/// let conn = Connection::new(storage);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// conn.commit()?;
/// assert_eq!(conn.with_storage(|s| s.contains(durus_core::Oid::ROOT))?, true);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStorage {
    records: HashMap<Oid, Vec<u8>>,
    pending: Vec<(Oid, Vec<u8>)>,
    next_oid: u64,
    removed: Vec<Oid>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Storage for MemoryStorage {
    fn commit_lock(&mut self) -> Option<std::sync::Arc<dyn crate::storage::CommitLock>> {
        // The hub's own commit lock is the only one.
        None
    }

    fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        _interest: Option<&[Oid]>,
    ) -> Result<bool> {
        // No one else commits to it (it has one owner, in this process).
        crate::storage::nothing_changes(timeout)
    }

    fn change_notifier(&mut self) -> Option<std::sync::Arc<dyn crate::storage::ChangeNotifier>> {
        None
    }

    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        self.records.get(&oid).cloned().ok_or(Error::NotFound(oid))
    }

    fn contains(&mut self, oid: Oid) -> Result<bool> {
        Ok(self.records.contains_key(&oid))
    }

    fn new_oid(&mut self) -> Result<Oid> {
        let oid = Oid(self.next_oid);
        self.next_oid += 1;
        Ok(oid)
    }

    fn begin(&mut self) {
        self.pending.clear();
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        self.pending.push((oid, record));
        Ok(())
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        handler.invalidated(&[])?;
        for (oid, record) in self.pending.drain(..) {
            self.records.insert(oid, record);
        }
        Ok(Durability::done())
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        Ok(std::mem::take(&mut self.removed))
    }

    fn pack(&mut self) -> Result<()> {
        let live = reachable_oids(Oid::ROOT, |oid| Ok(self.records.get(&oid).cloned()))?;
        let dead: Vec<Oid> = self
            .records
            .keys()
            .filter(|oid| !live.contains(oid))
            .copied()
            .collect();
        for oid in &dead {
            self.records.remove(oid);
        }
        self.removed.extend(dead);
        Ok(())
    }
}
