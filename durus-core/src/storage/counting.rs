//! [`Counting`]: a storage adapter that counts what passes through it, for
//! benchmarks and tests (round trips of a traversal, records per commit).

use super::{ChangeNotifier, CommitHandler, CommitLock, Durability, Loader, Outage, Storage};
use crate::error::Result;
use crate::oid::Oid;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a [`Counting`] storage saw. Shared, so it can be read while a
/// connection owns the storage.
///
/// ```
/// use durus_core::storage::{Counting, Written};
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList};
///
/// let (storage, counts) = Counting::new(MemoryStorage::new());
/// let conn = Connection::new(storage);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// root.write()?.push(1);
/// conn.commit()?;
/// assert_eq!(counts.last().records, 1);
/// let total: Written = counts.total();
/// assert!(total.records >= 1 && total.bytes >= counts.last().bytes);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct StorageCounts {
    records_loaded: AtomicU64,
    load_requests: AtomicU64,
    last_records: AtomicU64,
    last_bytes: AtomicU64,
    committed_records: AtomicU64,
    committed_bytes: AtomicU64,
    pending_records: AtomicU64,
    pending_bytes: AtomicU64,
}

/// Loads counted by [`StorageCounts::loads`].
///
/// ```
/// use durus_core::storage::{Counting, Loads};
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList};
///
/// let (storage, counts) = Counting::new(MemoryStorage::new());
/// let conn = Connection::new(storage);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// conn.commit()?;
/// conn.abort()?; // nothing changed
/// let before = counts.loads();
/// let _ = conn.root::<PersistentList<u8>>()?.read()?.len();
/// let after = counts.loads();
/// assert!(after.records >= before.records);
/// assert_eq!(Loads::default(), Loads { records: 0, requests: 0 });
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loads {
    /// Records loaded.
    pub records: u64,
    /// Load requests: one per `load` or `bulk_load`.
    pub requests: u64,
}

/// Committed records counted by [`StorageCounts::last`] and [`StorageCounts::total`].
///
/// ```
/// use durus_core::storage::{Counting, Written};
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList};
///
/// let (storage, counts) = Counting::new(MemoryStorage::new());
/// let conn = Connection::new(storage);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// root.write()?.push(1);
/// conn.commit()?;
/// assert_eq!(counts.last().records, 1);
/// let total: Written = counts.total();
/// assert!(total.records >= 1 && total.bytes >= counts.last().bytes);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// Records committed.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl StorageCounts {
    /// The records loaded and the load requests so far.
    pub fn loads(&self) -> Loads {
        Loads {
            records: self.records_loaded.load(Ordering::Relaxed),
            requests: self.load_requests.load(Ordering::Relaxed),
        }
    }

    /// The records of the last committed transaction.
    pub fn last(&self) -> Written {
        Written {
            records: self.last_records.load(Ordering::Relaxed),
            bytes: self.last_bytes.load(Ordering::Relaxed),
        }
    }

    /// The records of every committed transaction.
    pub fn total(&self) -> Written {
        Written {
            records: self.committed_records.load(Ordering::Relaxed),
            bytes: self.committed_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Passes everything on to `inner`, counting loads and committed records.
///
/// ```
/// use durus_core::storage::{Counting, Written};
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList};
///
/// let (storage, counts) = Counting::new(MemoryStorage::new());
/// let conn = Connection::new(storage);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// root.write()?.push(1);
/// conn.commit()?;
/// assert_eq!(counts.last().records, 1);
/// let total: Written = counts.total();
/// assert!(total.records >= 1 && total.bytes >= counts.last().bytes);
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct Counting<S> {
    inner: S,
    counts: Arc<StorageCounts>,
    prefetch_hint: Option<usize>,
}

impl<S: Storage> Counting<S> {
    /// Wraps `inner`; the returned counts follow it.
    pub fn new(inner: S) -> (Counting<S>, Arc<StorageCounts>) {
        let counts = Arc::new(StorageCounts::default());
        let storage = Counting {
            inner,
            counts: counts.clone(),
            prefetch_hint: None,
        };
        (storage, counts)
    }

    /// Answers `prefetch_hint` with `hint` instead of asking `inner`
    /// (to try prefetching over an in-process storage).
    pub fn with_prefetch_hint(mut self, hint: usize) -> Counting<S> {
        self.prefetch_hint = Some(hint);
        self
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl<S: Storage> Storage for Counting<S> {
    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        add(&self.counts.records_loaded, 1);
        add(&self.counts.load_requests, 1);
        self.inner.load(oid)
    }

    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        add(&self.counts.records_loaded, oids.len() as u64);
        add(&self.counts.load_requests, 1);
        self.inner.bulk_load(oids)
    }

    fn prefetch_hint(&self) -> usize {
        self.prefetch_hint
            .unwrap_or_else(|| self.inner.prefetch_hint())
    }

    fn new_oid(&mut self) -> Result<Oid> {
        self.inner.new_oid()
    }

    fn begin(&mut self) {
        self.counts.pending_records.store(0, Ordering::Relaxed);
        self.counts.pending_bytes.store(0, Ordering::Relaxed);
        self.inner.begin()
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        add(&self.counts.pending_records, 1);
        add(&self.counts.pending_bytes, record.len() as u64);
        self.inner.store(oid, record)
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        let out = self.inner.end(handler)?;
        let c = &self.counts;
        let records = c.pending_records.swap(0, Ordering::Relaxed);
        let bytes = c.pending_bytes.swap(0, Ordering::Relaxed);
        c.last_records.store(records, Ordering::Relaxed);
        c.last_bytes.store(bytes, Ordering::Relaxed);
        add(&c.committed_records, records);
        add(&c.committed_bytes, bytes);
        Ok(out)
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        self.inner.sync()
    }

    fn pack(&mut self) -> Result<()> {
        self.inner.pack()
    }

    fn pack_step(&mut self) -> Result<bool> {
        self.inner.pack_step()
    }

    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn timed_out(&self) -> bool {
        self.inner.timed_out()
    }

    fn contains(&mut self, oid: Oid) -> Result<bool> {
        self.inner.contains(oid)
    }

    fn missing(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        self.inner.missing(oids)
    }

    fn commit_lock(&mut self) -> Option<Arc<dyn CommitLock>> {
        self.inner.commit_lock()
    }

    fn outage(&self) -> Option<Arc<Outage>> {
        self.inner.outage()
    }

    fn loader(&mut self) -> Option<Arc<dyn Loader>> {
        self.inner.loader()
    }

    fn wait_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        self.inner.wait_for_change(timeout, interest)
    }

    fn change_notifier(&mut self) -> Option<Arc<dyn ChangeNotifier>> {
        self.inner.change_notifier()
    }
}

/// A boxed storage is a storage, so adapters can wrap one.
impl<S: Storage + ?Sized> Storage for Box<S> {
    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        (**self).load(oid)
    }
    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        (**self).bulk_load(oids)
    }
    fn prefetch_hint(&self) -> usize {
        (**self).prefetch_hint()
    }
    fn new_oid(&mut self) -> Result<Oid> {
        (**self).new_oid()
    }
    fn begin(&mut self) {
        (**self).begin()
    }
    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        (**self).store(oid, record)
    }
    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        (**self).end(handler)
    }
    fn sync(&mut self) -> Result<Vec<Oid>> {
        (**self).sync()
    }
    fn pack(&mut self) -> Result<()> {
        (**self).pack()
    }
    fn pack_step(&mut self) -> Result<bool> {
        (**self).pack_step()
    }
    fn close(&mut self) -> Result<()> {
        (**self).close()
    }

    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }

    fn timed_out(&self) -> bool {
        (**self).timed_out()
    }

    fn contains(&mut self, oid: Oid) -> Result<bool> {
        (**self).contains(oid)
    }

    fn missing(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        (**self).missing(oids)
    }

    fn commit_lock(&mut self) -> Option<Arc<dyn CommitLock>> {
        (**self).commit_lock()
    }

    fn outage(&self) -> Option<Arc<Outage>> {
        (**self).outage()
    }

    fn loader(&mut self) -> Option<Arc<dyn Loader>> {
        (**self).loader()
    }

    fn wait_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        (**self).wait_for_change(timeout, interest)
    }

    fn change_notifier(&mut self) -> Option<Arc<dyn ChangeNotifier>> {
        (**self).change_notifier()
    }
}
