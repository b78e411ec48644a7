//! [`SharedStorage`]: a hub session as the storage of one `Connection`.

use super::Session;
use crate::error::Result;
use crate::oid::Oid;
use crate::protocol::records_only;
use crate::storage::{ChangeNotifier, ClientTransaction, CommitHandler, Durability, Storage};
use std::sync::Arc;
use std::time::Duration;

/// A [`Storage`] for one `Connection` over a [`Hub`], in this process.
///
/// ```
/// use durus_core::hub::SharedStorage;
/// use durus_core::{Connection, Hub, MemoryStorage, PRef, PersistentList};
///
/// let hub = Hub::new(MemoryStorage::new());
/// let storage: SharedStorage = hub.storage();
/// let conn = Connection::new(storage);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// root.write()?.push(1);
/// conn.commit()?;
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct SharedStorage {
    session: Session,
    transaction: ClientTransaction,
}

const OID_BATCH: usize = 32;

impl SharedStorage {
    pub(super) fn new(session: Session) -> SharedStorage {
        SharedStorage {
            session,
            transaction: ClientTransaction::default(),
        }
    }

    /// The session under this storage.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Storage for SharedStorage {
    fn commit_lock(&mut self) -> Option<std::sync::Arc<dyn crate::storage::CommitLock>> {
        // The hub takes its storage's lock inside the commit exchange.
        None
    }

    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        self.session.load(oid)?.into_record(oid)
    }

    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        let replies = self.session.bulk_load(oids)?;
        oids.iter()
            .zip(replies)
            .map(|(oid, reply)| reply.into_record(*oid))
            .collect()
    }

    fn new_oid(&mut self) -> Result<Oid> {
        let session = &self.session;
        self.transaction.new_oid(|| session.new_oids(OID_BATCH))
    }

    fn begin(&mut self) {
        self.transaction.begin();
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        self.transaction.store(oid, record);
        Ok(())
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        let exchange = self.session.begin_commit()?;
        // On an error the exchange is dropped, which abandons the commit.
        self.transaction
            .resolve(handler, exchange.invalidations(), |asked| {
                let current = exchange.load_current(asked)?;
                Ok(records_only(asked.iter().copied().zip(current)))
            })?;
        let durability = exchange.commit(self.transaction.take_records())?;
        durability.wait()?;
        Ok(Durability::done())
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        self.session.sync()
    }

    fn pack(&mut self) -> Result<()> {
        self.session.pack()
    }

    fn wait_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        self.session.wait_for_change(timeout, interest)
    }

    fn change_notifier(&mut self) -> Option<Arc<dyn ChangeNotifier>> {
        // The hub wakes its own sessions.
        None
    }
}
