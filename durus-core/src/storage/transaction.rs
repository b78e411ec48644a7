//! The client's side of a commit on a shared storage, whatever carries it
//! (the in-process hub or a socket): records waiting for `end`, oids
//! reserved in batches, and the conflict-resolution round.

use super::CommitHandler;
use crate::error::{Error, Result, StorageError};
use crate::oid::Oid;

/// Records of the transaction under way and the oids reserved for it.
#[derive(Debug, Default)]
pub(crate) struct ClientTransaction {
    pending: Vec<(Oid, Vec<u8>)>,
    /// Reserved oids not handed out yet, next last.
    oid_pool: Vec<Oid>,
    /// Oids handed out in this transaction, returned on conflict.
    transaction_oids: Vec<Oid>,
}

impl ClientTransaction {
    /// An oid from the pool, refilled by `reserve` when empty.
    pub(crate) fn new_oid(&mut self, reserve: impl FnOnce() -> Result<Vec<Oid>>) -> Result<Oid> {
        if self.oid_pool.is_empty() {
            let mut batch = reserve()?;
            batch.reverse();
            self.oid_pool = batch;
        }
        let oid = self
            .oid_pool
            .pop()
            .ok_or_else(|| Error::Storage(StorageError::Other("no oid was reserved".into())))?;
        self.transaction_oids.push(oid);
        Ok(oid)
    }

    pub(crate) fn begin(&mut self) {
        self.pending.clear();
        self.transaction_oids.clear();
    }

    pub(crate) fn store(&mut self, oid: Oid, record: Vec<u8>) {
        self.pending.push((oid, record));
    }

    /// The commit was abandoned: as Durus's ClientStorage does, the oids of
    /// this transaction go back to the pool.
    pub(crate) fn abandon(&mut self) {
        self.oid_pool.extend(self.transaction_oids.drain(..).rev());
        self.pending.clear();
    }

    /// The oids of the records waiting for `end`.
    #[cfg(feature = "postgres")]
    pub(crate) fn pending_oids(&self) -> impl Iterator<Item = Oid> + '_ {
        self.pending.iter().map(|(oid, _)| *oid)
    }

    /// The records to send; the oids they use are spent.
    pub(crate) fn take_records(&mut self) -> Vec<(Oid, Vec<u8>)> {
        self.transaction_oids.clear();
        std::mem::take(&mut self.pending)
    }

    /// Hands the invalidations to `handler` and, when it asks for them,
    /// the current records (from `fetch`) to merge; merged records replace
    /// this client's. On an error the transaction is abandoned and the
    /// caller tells the other side it gives up.
    pub(crate) fn resolve(
        &mut self,
        handler: &mut dyn CommitHandler,
        invalidations: &[Oid],
        fetch: impl FnOnce(&[Oid]) -> Result<Vec<(Oid, Vec<u8>)>>,
    ) -> Result<()> {
        let out = self.resolve_inner(handler, invalidations, fetch);
        if out.is_err() {
            self.abandon();
        }
        out
    }

    fn resolve_inner(
        &mut self,
        handler: &mut dyn CommitHandler,
        invalidations: &[Oid],
        fetch: impl FnOnce(&[Oid]) -> Result<Vec<(Oid, Vec<u8>)>>,
    ) -> Result<()> {
        let asked = handler.invalidated(invalidations)?;
        if asked.is_empty() {
            return Ok(());
        }
        let current = fetch(&asked)?;
        for (oid, record) in handler.resolve(current)? {
            match self.pending.iter_mut().find(|(o, _)| *o == oid) {
                Some(slot) => slot.1 = record,
                None => self.pending.push((oid, record)),
            }
        }
        Ok(())
    }
}
