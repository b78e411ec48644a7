//! The [`Storage`] trait, shaped like Durus's `Storage`, and its implementations.
//!
//! A `Connection` drives one storage. Single-owner storages (memory, file)
//! never report conflicts; shared ones (the in-process hub, a server) report
//! the oids other clients committed, and the connection decides, through a
//! [`CommitHandler`], whether that is a conflict or can be resolved.

mod client;
mod counting;
pub mod file;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod transaction;

pub use client::{ClientOptions, ClientStorage};
pub use counting::{Counting, Loads, StorageCounts, Written};
pub use file::{FileOptions, FileStorage, FsyncPolicy};
pub use memory::MemoryStorage;
#[cfg(feature = "postgres")]
pub use postgres::{PgRow, PgStorage};
pub(crate) use transaction::ClientTransaction;

use crate::error::Result;
use crate::oid::Oid;
use crate::record;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// A store of records by oid with transactional commits.
///
/// ```
/// use durus_core::{MemoryStorage, Oid, Storage};
///
/// let mut storage = MemoryStorage::new();
/// assert!(!storage.contains(Oid::ROOT)?);
/// let oid = storage.new_oid()?;
/// assert_eq!(oid, Oid::ROOT); // the first oid is the root's
/// # Ok::<(), durus_core::Error>(())
/// ```
pub trait Storage: Send {
    /// The record stored for `oid`.
    ///
    /// `Error::NotFound` when there is none; a read conflict when a shared
    /// storage knows this client's copy of it is obsolete.
    fn load(&mut self, oid: Oid) -> Result<Vec<u8>>;

    /// The records of several oids, in order. Servers answer in one round trip.
    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        oids.iter().map(|oid| self.load(*oid)).collect()
    }

    /// How many of the records a loaded record refers to the connection
    /// should fetch with it, in one `bulk_load` (0: none). Remote storages
    /// answer more than 0: a round trip costs more than a record.
    fn prefetch_hint(&self) -> usize {
        0
    }

    /// True when a record is stored for `oid`.
    fn contains(&mut self, oid: Oid) -> Result<bool> {
        match self.load(oid) {
            Ok(_) => Ok(true),
            Err(crate::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// An oid that no stored or reserved object uses.
    fn new_oid(&mut self) -> Result<Oid>;

    /// Starts a transaction, dropping any records stored but not ended.
    fn begin(&mut self);

    /// Adds a record (see `docs/RECORDS.md`) to the transaction.
    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()>;

    /// Commits the transaction.
    ///
    /// Shared storages first hand the oids committed by others to `handler`,
    /// which may refuse (a conflict) or ask for their current records to merge.
    /// The returned [`Durability`] must be waited on before the commit is
    /// reported as done; it lets several commits share one fsync.
    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability>;

    /// The oids changed by others since the last call (or the last `end`).
    fn sync(&mut self) -> Result<Vec<Oid>>;

    /// Removes the records that cannot be reached from the root.
    fn pack(&mut self) -> Result<()>;

    /// Does a bounded part of a pack, so that a server can go on serving
    /// between steps; returns `Ok(true)` when the pack is complete (the next
    /// call starts a new one). Oids the pack removed are reported by `sync`.
    /// The default packs in one step.
    fn pack_step(&mut self) -> Result<bool> {
        self.pack()?;
        Ok(true)
    }

    /// Releases the storage. Later calls fail.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// True when the storage can no longer be used: closed, or (for a
    /// server) its connection broke. A `Database` then makes a new one.
    fn is_closed(&self) -> bool {
        false
    }

    /// True when the storage was closed because its server did not answer
    /// in time: a `Database` then fails the transaction rather than retry
    /// (each attempt would wait as long again).
    fn timed_out(&self) -> bool {
        false
    }

    /// Those of `oids` that have no record (a reference check before a
    /// commit); one round trip on a remote storage.
    fn missing(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        let mut out = Vec::new();
        for oid in oids {
            if !self.contains(*oid)? {
                out.push(*oid);
            }
        }
        Ok(out)
    }

    /// The commit lock of a storage that other processes commit to as well
    /// (PostgreSQL). A [`Hub`](crate::Hub) takes it before it looks at its
    /// sessions' invalidations, so that what changed in the database is
    /// known when a commit is checked; and it waits for it without holding
    /// its own state, so that loads and syncs go on meanwhile. `None`: the
    /// hub's own commit lock is enough (a file, memory, a server).
    ///
    /// Required, with no default: a storage that wraps another must pass
    /// its lock on, or a hub over the wrapper would check commits against
    /// its own sync point only and could lose another process's update.
    fn commit_lock(&mut self) -> Option<Arc<dyn CommitLock>>;

    /// Sessions of a remote storage (PostgreSQL) that load one record
    /// without the storage itself, so that a [`Hub`](crate::Hub)'s clients
    /// load in parallel instead of one after another behind its state.
    /// `None`: loads go through the storage.
    fn loader(&mut self) -> Option<Arc<dyn Loader>> {
        None
    }

    /// How long a remote storage has been unreachable, shared with whoever
    /// watches it (a server that exits past a limit). `None`: it cannot be.
    fn outage(&self) -> Option<Arc<Outage>> {
        None
    }

    /// Blocks until another client has committed something this client has
    /// not synced yet (`Ok(true)`), or `timeout` passes (`Ok(false)`). With
    /// `interest`, only a change to one of those oids counts.
    ///
    /// It does not take the changes: the next `sync` (or `end`) reports
    /// them as usual. A storage no one else commits to (memory, a locked
    /// file) sleeps for the timeout. Required, with no default: a wrapper
    /// must pass it on, or its users would sleep through every change.
    fn wait_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool>;

    /// What wakes a [`Hub`](crate::Hub)'s waiters when another *process*
    /// commits to this storage (PostgreSQL's LISTEN/NOTIFY). `None`: every
    /// commit goes through this storage's hub, which wakes its waiters
    /// itself (a file, memory, a server's session).
    ///
    /// Required, with no default, for the same reason as `commit_lock`.
    fn change_notifier(&mut self) -> Option<Arc<dyn ChangeNotifier>>;
}

/// A source of "another process committed" signals (see
/// [`Storage::change_notifier`]). Shared by a hub's waiters; used from one
/// thread at a time.
pub trait ChangeNotifier: Send + Sync {
    /// Blocks until a commit may have happened elsewhere since the last
    /// call (`Ok(true)`; spurious wake-ups are allowed, e.g. after a
    /// reconnection, when a signal may have been lost) or `timeout`
    /// passes (`Ok(false)`).
    fn wait(&self, timeout: Duration) -> Result<bool>;

    /// Stops listening; later waits fail.
    fn close(&self);
}

/// `Ok(false)` after `timeout`: what a storage that no one else commits to
/// answers to [`Storage::wait_for_change`].
pub(crate) fn nothing_changes(timeout: Duration) -> Result<bool> {
    std::thread::sleep(timeout);
    Ok(false)
}

/// Loads beside a storage (see [`Storage::loader`]).
pub trait Loader: Send + Sync {
    /// The point the storage's view is at: records written later are not
    /// part of it. Read it where the storage cannot move meanwhile (a hub
    /// reads it under its state lock, with the session's invalidations).
    fn as_of(&self) -> u64;

    /// The record of `oid` and the point it was written at; `None` when
    /// there is none.
    fn load(&self, oid: Oid) -> Result<Option<(u64, Vec<u8>)>>;
}

/// A database's own commit lock (see [`Storage::commit_lock`]).
pub trait CommitLock: Send + Sync {
    /// Waits, bounded, for the lock. It is held until the storage's next
    /// `end` finishes (whatever its outcome) or [`CommitLock::release`].
    fn acquire(&self) -> Result<()>;

    /// Gives up the lock without committing; nothing is written. Does
    /// nothing when it is not held.
    fn release(&self);
}

/// Since when a remote storage has been unreachable.
///
/// ```
/// use durus_core::storage::Outage;
///
/// let outage = Outage::default();
/// assert!(outage.duration().is_none());
/// outage.begin();
/// assert!(outage.duration().is_some());
/// outage.end();
/// assert!(outage.duration().is_none());
/// ```
#[derive(Debug, Default)]
pub struct Outage {
    since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Outage {
    /// How long it has lasted; `None` when the storage is reachable.
    pub fn duration(&self) -> Option<std::time::Duration> {
        crate::lock(&self.since).map(|t| t.elapsed())
    }

    /// The storage was found unreachable (the first time counts).
    pub fn begin(&self) {
        crate::lock(&self.since).get_or_insert_with(std::time::Instant::now);
    }

    /// The storage answers again.
    pub fn end(&self) {
        *crate::lock(&self.since) = None;
    }
}

/// The connection's side of a commit on a shared storage.
///
/// ```
/// use durus_core::storage::{CommitHandler, NoConflicts};
/// use durus_core::Oid;
///
/// let mut handler = NoConflicts;
/// assert!(handler.invalidated(&[]).is_ok());
/// assert!(handler.invalidated(&[Oid(3)]).is_err());
/// ```
pub trait CommitHandler {
    /// Receives the oids other clients committed since this one last synced.
    ///
    /// Returns the oids whose current records are needed to resolve
    /// conflicts (empty when there is no conflict), or a conflict error,
    /// which abandons the commit.
    fn invalidated(&mut self, oids: &[Oid]) -> Result<Vec<Oid>>;

    /// Receives the current records of the oids asked for by `invalidated`
    /// and returns the merged records to store in place of this client's.
    fn resolve(&mut self, current: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>>;
}

/// A handler for commits that cannot conflict: any invalidation is a conflict.
///
/// ```
/// use durus_core::storage::NoConflicts;
/// use durus_core::{MemoryStorage, Storage};
///
/// let mut storage = MemoryStorage::new();
/// storage.begin();
/// storage.end(&mut NoConflicts)?.wait()?; // an empty commit
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct NoConflicts;

impl CommitHandler for NoConflicts {
    fn invalidated(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        if oids.is_empty() {
            Ok(Vec::new())
        } else {
            Err(crate::Error::write_conflict(oids.to_vec()))
        }
    }

    fn resolve(&mut self, _: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

type DurableWait = Box<dyn FnOnce() -> Result<()> + Send>;

/// What a written commit still needs to be durable (an fsync, perhaps shared
/// with other commits). Wait on it before acknowledging the commit.
///
/// ```
/// use durus_core::storage::Durability;
///
/// Durability::done().wait()?;
/// let pending = Durability::pending(|| Ok(())); // e.g. waits for an fsync
/// pending.wait()?;
/// # Ok::<(), durus_core::Error>(())
/// ```
#[must_use = "a commit is not durable until its Durability is waited on"]
pub struct Durability(Option<DurableWait>);

impl Durability {
    /// Already durable (or durability is not asked for).
    pub fn done() -> Durability {
        Durability(None)
    }

    /// Durable once `wait` returns `Ok`.
    pub fn pending(wait: impl FnOnce() -> Result<()> + Send + 'static) -> Durability {
        Durability(Some(Box::new(wait)))
    }

    /// Blocks until the commit is durable.
    pub fn wait(self) -> Result<()> {
        match self.0 {
            Some(wait) => wait(),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Durability::Pending"
        } else {
            "Durability::Done"
        })
    }
}

/// Refuses a transaction whose records refer to an oid that is neither
/// stored nor written by the transaction: a dangling reference, made by a
/// client that still held a handle to an object a pack removed. It is a
/// conflict naming that oid; nothing is stored.
pub(crate) fn check_references(
    records: &[(Oid, Vec<u8>)],
    missing: impl FnOnce(&[Oid]) -> Result<Vec<Oid>>,
) -> Result<()> {
    let written: HashSet<Oid> = records.iter().map(|(oid, _)| *oid).collect();
    // Each oid is asked once, all in one call (one round trip remotely).
    let mut asked: BTreeSet<Oid> = BTreeSet::new();
    for (_, rec) in records {
        for r in record::unpack(rec)?.ref_oids() {
            if !written.contains(&r) {
                asked.insert(r);
            }
        }
    }
    if asked.is_empty() {
        return Ok(());
    }
    let asked: Vec<Oid> = asked.into_iter().collect();
    let gone = missing(&asked)?;
    if gone.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::write_conflict(gone))
    }
}

/// The oids reachable from the root by following record refs, starting at
/// `root`; `load` returns `None` for an oid with no record. Used by packs.
pub(crate) fn reachable_oids(
    root: Oid,
    mut load: impl FnMut(Oid) -> Result<Option<Vec<u8>>>,
) -> Result<BTreeSet<Oid>> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    let mut queued: HashSet<Oid> = HashSet::from([root]);
    while let Some(oid) = todo.pop() {
        let Some(rec) = load(oid)? else { continue };
        seen.insert(oid);
        for r in record::unpack(&rec)?.ref_oids() {
            if queued.insert(r) {
                todo.push(r);
            }
        }
    }
    Ok(seen)
}
