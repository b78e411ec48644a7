//! Group commit: commits written under the storage's lock share fsyncs
//! made outside it, and a failure is never retried.

use super::io::FileIo;
use crate::error::{Error, Result, StorageError};
use crate::lock;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The first failure of a write or fsync. Once set, every later write of
/// the storage is refused: what reached the disk is unknown.
#[derive(Debug, Default)]
pub(crate) struct Poison(Mutex<Option<String>>);

impl Poison {
    pub(crate) fn set(&self, why: String) {
        let mut slot = lock(&self.0);
        if slot.is_none() {
            *slot = Some(why);
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        match &*lock(&self.0) {
            None => Ok(()),
            Some(why) => Err(Error::Storage(StorageError::ReadOnly(format!(
                "an earlier write or fsync failed ({why}); reopen the file"
            )))),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// Commits written to the file so far (their sequence numbers are 1..=written).
    written: u64,
    /// Commits known durable.
    synced: u64,
    /// A leader is in fsync now.
    syncing: bool,
    /// The fsync that failed, if one did.
    failed: Option<String>,
}

/// The fsync state of one open file.
pub(crate) struct GroupSync {
    io: Arc<dyn FileIo>,
    counters: Mutex<Counters>,
    done: Condvar,
    poison: Arc<Poison>,
}

impl GroupSync {
    pub(crate) fn new(io: Arc<dyn FileIo>, poison: Arc<Poison>) -> Arc<GroupSync> {
        Arc::new(GroupSync {
            io,
            counters: Mutex::new(Counters::default()),
            done: Condvar::new(),
            poison,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }

    /// Counts a written commit; returns its sequence number.
    pub(crate) fn written(&self) -> u64 {
        let mut c = self.lock();
        c.written += 1;
        c.written
    }

    /// Blocks until commit `seq` is durable. The first waiter to find no
    /// fsync running becomes the leader and syncs every commit written so
    /// far; the others wait for it.
    pub(crate) fn wait(&self, seq: u64) -> Result<()> {
        let mut c = self.lock();
        loop {
            if c.synced >= seq {
                return Ok(());
            }
            if let Some(why) = &c.failed {
                return Err(Error::OutcomeUnknown(format!(
                    "it was written, but an fsync failed ({why})"
                )));
            }
            if !c.syncing {
                break;
            }
            c = self.done.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        c.syncing = true;
        let target = c.written;
        drop(c);
        let outcome = self.io.sync(true);
        let mut c = self.lock();
        c.syncing = false;
        let result = match outcome {
            Ok(()) => {
                c.synced = c.synced.max(target);
                Ok(())
            }
            Err(e) => {
                let why = format!("fsync: {e}");
                self.poison.set(why.clone());
                c.failed = Some(why);
                Err(Error::OutcomeUnknown(format!(
                    "it was written, but the fsync after it failed: {e}"
                )))
            }
        };
        drop(c);
        self.done.notify_all();
        result
    }
}
