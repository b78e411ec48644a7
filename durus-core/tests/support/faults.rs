//! A storage that fails on command, to walk a commit's failure paths.

use durus_core::storage::{CommitHandler, Durability};
use durus_core::{Error, Oid, Result, Storage};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Which operations fail next. Each switch fails one call, then resets.
#[derive(Default)]
pub struct Faults {
    /// `end` fails before storing anything.
    pub end: AtomicBool,
    /// `end` stores, then its durability wait fails (an fsync that failed):
    /// the commit is stored and visible, the caller told the outcome is unknown.
    pub durability: AtomicBool,
    /// `sync` fails (before taking any invalidation).
    pub sync: AtomicBool,
    /// `end` runs `breaker` first (which breaks the storage's connections
    /// to its database: the commit runs on a broken session).
    pub break_in_end: AtomicBool,
    /// What breaks the connections (set by a test that has them).
    pub breaker: std::sync::Mutex<Option<Box<dyn Fn() + Send>>>,
    /// How many faults fired.
    pub fired: AtomicU32,
}

impl Faults {
    pub fn arm(flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst);
    }

    /// Runs the breaker, if there is one.
    pub fn break_connections(&self) {
        if let Some(breaker) = self
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            breaker();
        }
    }

    fn take(&self, flag: &AtomicBool) -> bool {
        let hit = flag.swap(false, Ordering::SeqCst);
        if hit {
            self.fired.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

/// Wraps a storage; fails the operations `faults` names.
pub struct Faulty<S> {
    inner: S,
    faults: Arc<Faults>,
}

impl<S: Storage> Faulty<S> {
    /// Wraps `inner` with switches shared with other storages.
    pub fn sharing(inner: S, faults: Arc<Faults>) -> Faulty<S> {
        Faulty { inner, faults }
    }

    pub fn new(inner: S) -> (Faulty<S>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (
            Faulty {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }
}

fn injected(what: &str) -> Error {
    Error::Storage(durus_core::error::StorageError::Other(format!(
        "injected failure: {what}"
    )))
}

impl<S: Storage> Storage for Faulty<S> {
    fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        interest: Option<&[Oid]>,
    ) -> Result<bool> {
        self.inner.wait_for_change(timeout, interest)
    }

    fn change_notifier(&mut self) -> Option<Arc<dyn durus_core::storage::ChangeNotifier>> {
        self.inner.change_notifier()
    }

    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        self.inner.load(oid)
    }

    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        self.inner.bulk_load(oids)
    }

    fn new_oid(&mut self) -> Result<Oid> {
        self.inner.new_oid()
    }

    fn begin(&mut self) {
        self.inner.begin()
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        self.inner.store(oid, record)
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        if self.faults.take(&self.faults.end) {
            self.inner.begin();
            return Err(injected("end"));
        }
        if self.faults.take(&self.faults.break_in_end) {
            self.faults.break_connections();
        }
        let durability = self.inner.end(handler)?;
        if self.faults.take(&self.faults.durability) {
            durability.wait()?;
            return Ok(Durability::pending(|| {
                Err(Error::OutcomeUnknown("injected fsync failure".into()))
            }));
        }
        Ok(durability)
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        if self.faults.take(&self.faults.sync) {
            return Err(injected("sync"));
        }
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

    fn missing(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        self.inner.missing(oids)
    }

    fn commit_lock(&mut self) -> Option<Arc<dyn durus_core::storage::CommitLock>> {
        self.inner.commit_lock()
    }

    fn outage(&self) -> Option<Arc<durus_core::storage::Outage>> {
        self.inner.outage()
    }

    fn loader(&mut self) -> Option<Arc<dyn durus_core::storage::Loader>> {
        self.inner.loader()
    }

    fn timed_out(&self) -> bool {
        self.inner.timed_out()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn contains(&mut self, oid: Oid) -> Result<bool> {
        self.inner.contains(oid)
    }

    fn prefetch_hint(&self) -> usize {
        self.inner.prefetch_hint()
    }
}
