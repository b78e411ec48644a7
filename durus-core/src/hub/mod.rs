//! The hub: the commit logic of a shared storage, free of sockets.
//!
//! Many clients (connections in threads, or the sessions of a storage
//! server) share one [`Storage`] through a [`Hub`]. Each client has a
//! [`Session`] with its own invalidation set and reserved oids, as in
//! Durus's `StorageServer`. A commit is an exchange (`CommitExchange`):
//! while it lasts no other client can commit, but loads and syncs go on.
//!
//! A session can wait until it has invalidations ([`Session::wait_for_change`]):
//! a condition variable is notified whenever invalidation sets grow (a
//! commit, a pack, a sync that brings another process's commits), so that
//! idle workers sleep instead of polling.

mod shared_storage;

pub use shared_storage::SharedStorage;

use crate::error::{Error, ProtocolError, Result, StorageError};
use crate::lock;
use crate::oid::Oid;
use crate::protocol::LoadReply;
use crate::storage::{
    ChangeNotifier, CommitLock, Durability, Loader, NoConflicts, Outage, Storage,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// A storage shared by many sessions.
///
/// ```
/// use durus_core::{Connection, Hub, MemoryStorage, PRef, PersistentDict};
///
/// let hub = Hub::new(MemoryStorage::new());
/// let writer = Connection::new(hub.storage());
/// let root: PRef<PersistentDict<String, u32>> = writer.root()?;
/// root.write()?.insert("a".into(), 1);
/// writer.commit()?;
///
/// let other = hub.clone();
/// let seen = std::thread::spawn(move || -> durus_core::Result<Option<u32>> {
///     let reader = Connection::new(other.storage());
///     let root: PRef<PersistentDict<String, u32>> = reader.root()?;
///     let value = root.read()?.get("a").copied();
///     Ok(value)
/// })
/// .join()
/// .expect("the reader thread")?;
/// assert_eq!(seen, Some(1));
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    /// Held for the whole of one commit exchange.
    commit: Mutex<()>,
    /// The storage and the sessions; held briefly by every operation.
    state: Mutex<State>,
    next_session: AtomicU64,
    /// Bytes of record data committed since the counter was last taken.
    bytes_committed: AtomicU64,
    /// The database's own commit lock, when other processes commit to it
    /// too: taken after `commit`, before `state`.
    database_lock: Option<Arc<dyn CommitLock>>,
    /// How long the storage has been unreachable (a remote one).
    outage: Option<Arc<Outage>>,
    /// Sessions that load one record without the state lock (a remote
    /// storage's pool).
    loader: Option<Arc<dyn Loader>>,
    /// Notified (with `state`) whenever a session's invalidations grow.
    changed: Condvar,
    /// Signals of commits made by other processes (PostgreSQL).
    notifier: Option<Arc<dyn ChangeNotifier>>,
    /// The thread that turns `notifier`'s signals into syncs was started.
    watching: AtomicBool,
    /// Sessions in `wait_for_change` now.
    waiters: AtomicUsize,
    /// Another process may have committed since the storage was last
    /// synced for waiters: the next waiter syncs first (one query then,
    /// not one per wait).
    unsynced: AtomicBool,
    /// `close` was called: the watcher thread ends.
    closed: AtomicBool,
}

struct State {
    storage: Box<dyn Storage>,
    sessions: HashMap<u64, SessionState>,
    /// The root is known to be stored (until then, oid 0 is handed out
    /// again to whoever asks first: a client that reserved it and went
    /// away must not leave a database where no later client makes it).
    root_stored: bool,
}

#[derive(Default)]
struct SessionState {
    /// Oids committed by others (or removed by a pack) since this session synced.
    invalid: HashSet<Oid>,
    /// Oids handed to this session and not yet committed by it.
    unused_oids: HashSet<Oid>,
}

impl Hub {
    /// Shares `storage`.
    pub fn new(storage: impl Storage + 'static) -> Hub {
        Hub::from_boxed(Box::new(storage))
    }

    /// Shares an already boxed storage.
    pub fn from_boxed(mut storage: Box<dyn Storage>) -> Hub {
        let database_lock = storage.commit_lock();
        let outage = storage.outage();
        let loader = storage.loader();
        let notifier = storage.change_notifier();
        Hub {
            shared: Arc::new(Shared {
                commit: Mutex::new(()),
                state: Mutex::new(State {
                    storage,
                    sessions: HashMap::new(),
                    root_stored: false,
                }),
                next_session: AtomicU64::new(1),
                bytes_committed: AtomicU64::new(0),
                database_lock,
                outage,
                loader,
                changed: Condvar::new(),
                notifier,
                watching: AtomicBool::new(false),
                waiters: AtomicUsize::new(0),
                unsynced: AtomicBool::new(true),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// A new client of the hub.
    pub fn session(&self) -> Session {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.state)
            .sessions
            .insert(id, SessionState::default());
        Session {
            hub: self.clone(),
            id,
        }
    }

    /// A storage for a `Connection` in this process, backed by a new session.
    pub fn storage(&self) -> SharedStorage {
        SharedStorage::new(self.session())
    }

    /// The number of sessions open.
    pub fn session_count(&self) -> usize {
        lock(&self.shared.state).sessions.len()
    }

    /// How long the storage has been unreachable; `None` while it answers
    /// (or when it cannot be: a file, memory).
    pub fn outage(&self) -> Option<std::time::Duration> {
        self.shared.outage.as_ref().and_then(|o| o.duration())
    }

    /// Returns and resets the count of data bytes committed (for background packs).
    pub fn take_bytes_committed(&self) -> u64 {
        self.shared.bytes_committed.swap(0, Ordering::Relaxed)
    }

    /// Runs `f` on the storage alone: no commit runs meanwhile, and the
    /// oids it reports through `sync` afterwards are passed to every session.
    pub fn with_storage<R>(&self, f: impl FnOnce(&mut dyn Storage) -> Result<R>) -> Result<R> {
        let _commit = lock(&self.shared.commit);
        let mut state = lock(&self.shared.state);
        let out = f(state.storage.as_mut());
        self.shared.sync_storage(&mut state)?;
        out
    }

    /// Does one bounded step of a pack (see [`Storage::pack_step`]); commits
    /// and loads of other sessions run between steps. `Ok(true)` when done.
    pub fn pack_step(&self) -> Result<bool> {
        self.with_storage(|s| s.pack_step())
    }

    /// Closes the storage; later operations fail. (No sync after it, as
    /// `with_storage` does: a closed storage may refuse one.)
    pub fn close(&self) -> Result<()> {
        let _commit = lock(&self.shared.commit);
        let mut state = lock(&self.shared.state);
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(notifier) = &self.shared.notifier {
            notifier.close();
        }
        state.storage.close()
    }

    /// Starts, once, the thread that syncs the storage when another
    /// process commits (see [`Storage::change_notifier`]), so that waiters
    /// wake. It holds the hub weakly and ends with it (or its `close`).
    fn watch_other_processes(&self) {
        let Some(notifier) = self.shared.notifier.clone() else {
            return;
        };
        if self.shared.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("durus-hub-watch".into())
            .spawn(move || watch(&shared, notifier.as_ref()));
        if let Err(e) = spawned {
            tracing::warn!("cannot start the hub's change watcher: {e}");
            self.shared.watching.store(false, Ordering::SeqCst);
        }
    }
}

/// How long the watcher waits for a signal before it syncs anyway while
/// sessions wait: a safety net for a signal lost (a writer that does not
/// send them), not the normal path.
const WATCH_SLICE: Duration = Duration::from_millis(500);

/// The watcher's loop (see [`Hub::watch_other_processes`]).
fn watch(shared: &Weak<Shared>, notifier: &dyn ChangeNotifier) {
    let mut failures = 0u32;
    loop {
        match shared.upgrade() {
            Some(s) if !s.closed.load(Ordering::SeqCst) => {}
            _ => return,
        }
        let signalled = match notifier.wait(WATCH_SLICE) {
            Ok(signalled) => signalled,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!("hub change watcher: {e}");
                if let Some(s) = shared.upgrade() {
                    // Signals may be lost meanwhile: waiters look themselves.
                    s.unsynced.store(true, Ordering::SeqCst);
                }
                // PostgreSQL is away: waiters time out meanwhile.
                std::thread::sleep(Duration::from_millis(50 << failures.min(5)));
                continue;
            }
        };
        failures = 0;
        let Some(s) = shared.upgrade() else { return };
        if signalled {
            // Set before looking at the waiters: a waiter that starts now
            // syncs itself (see `Session::wait_for_change`).
            s.unsynced.store(true, Ordering::SeqCst);
        }
        // On a signal, or a slice without one (a safety net), while
        // sessions wait.
        if s.waiters.load(Ordering::SeqCst) > 0 {
            let mut state = lock(&s.state);
            s.unsynced.store(false, Ordering::SeqCst);
            if let Err(e) = s.sync_storage(&mut state) {
                s.unsynced.store(true, Ordering::SeqCst);
                tracing::debug!("hub change watcher: sync: {e}");
            }
        }
    }
}

impl Shared {
    /// Passes oids the storage reports (a pack's; on a storage shared with
    /// other processes, their commits) to every session, and wakes waiters.
    fn sync_storage(&self, state: &mut State) -> Result<()> {
        let removed = state.storage.sync()?;
        if !removed.is_empty() {
            for s in state.sessions.values_mut() {
                s.invalid.extend(removed.iter().copied());
            }
            self.changed.notify_all();
        }
        Ok(())
    }
}

impl State {
    /// True when a session holds `oid`: reserved and not yet written, or
    /// invalid (removed by a pack; as Durus does, not handed out again).
    fn held_by_a_session(&self, oid: Oid) -> bool {
        self.sessions
            .values()
            .any(|s| s.invalid.contains(&oid) || s.unused_oids.contains(&oid))
    }

    fn session(&mut self, id: u64) -> Result<&mut SessionState> {
        self.sessions
            .get_mut(&id)
            .ok_or(Error::Storage(StorageError::Closed))
    }

    fn load_reply(&mut self, id: u64, oid: Oid) -> Result<LoadReply> {
        if self.session(id)?.invalid.contains(&oid) {
            return Ok(LoadReply::Invalid);
        }
        match self.storage.load(oid) {
            Ok(record) => Ok(LoadReply::Record(record)),
            Err(Error::NotFound(_)) => Ok(LoadReply::Missing),
            Err(Error::Conflict(_)) => Ok(LoadReply::Invalid),
            Err(e) => Err(e),
        }
    }
}

/// One client of a [`Hub`]. Dropping it ends the session.
///
/// ```
/// use durus_core::{Hub, MemoryStorage};
///
/// let hub = Hub::new(MemoryStorage::new());
/// let session = hub.session();
/// let oids = session.new_oids(2)?;
/// assert_eq!(oids.len(), 2);
/// assert!(session.sync()?.is_empty());
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct Session {
    hub: Hub,
    id: u64,
}

impl Session {
    /// Reserves `count` new oids for this session.
    ///
    /// As Durus does, an oid some session still holds as invalid (one a pack
    /// removed) is skipped, so that no session confuses old and new objects.
    pub fn new_oids(&self, count: usize) -> Result<Vec<Oid>> {
        let mut state = lock(&self.hub.shared.state);
        let mut oids = Vec::with_capacity(count);
        if count > 0 && !state.root_stored {
            if !state.storage.missing(&[Oid::ROOT])?.is_empty() {
                if !state.held_by_a_session(Oid::ROOT) {
                    oids.push(Oid::ROOT);
                }
            } else {
                state.root_stored = true;
            }
        }
        while oids.len() < count {
            let oid = state.storage.new_oid()?;
            // Oid 0 comes only from the branch above: the storage's own
            // counter may still hand it out after the root was stored.
            if oid != Oid::ROOT && !state.held_by_a_session(oid) {
                oids.push(oid);
            }
        }
        state
            .session(self.id)?
            .unused_oids
            .extend(oids.iter().copied());
        Ok(oids)
    }

    /// Loads one record.
    ///
    /// With a storage's loader (PostgreSQL), the record is read outside
    /// the state lock, so that loads of many sessions run at once: the
    /// session's invalidations and the storage's point are taken together
    /// under the lock, and a record written after that point is invalid
    /// for this load, as it would have been under the lock.
    pub(crate) fn load(&self, oid: Oid) -> Result<LoadReply> {
        let mut state = lock(&self.hub.shared.state);
        let Some(loader) = &self.hub.shared.loader else {
            return state.load_reply(self.id, oid);
        };
        if state.session(self.id)?.invalid.contains(&oid) {
            return Ok(LoadReply::Invalid);
        }
        let as_of = loader.as_of();
        drop(state);
        Ok(match loader.load(oid)? {
            // Removed meanwhile (a pack): invalid once the pack's removals
            // reached this session, as under the lock.
            None if lock(&self.hub.shared.state)
                .session(self.id)?
                .invalid
                .contains(&oid) =>
            {
                LoadReply::Invalid
            }
            None => LoadReply::Missing,
            Some((tid, _)) if tid > as_of => LoadReply::Invalid,
            Some((_, record)) => LoadReply::Record(record),
        })
    }

    /// Loads several records, holding the state lock once. Those not
    /// invalid for this session are asked of the storage in one
    /// `bulk_load` (one round trip on a remote storage); when that fails
    /// as a whole (one of them missing or changed), each is loaded alone.
    pub(crate) fn bulk_load(&self, oids: &[Oid]) -> Result<Vec<LoadReply>> {
        let mut state = lock(&self.hub.shared.state);
        let invalid: Vec<bool> = {
            let session = state.session(self.id)?;
            oids.iter().map(|o| session.invalid.contains(o)).collect()
        };
        let valid: Vec<Oid> = oids
            .iter()
            .zip(&invalid)
            .filter(|(_, bad)| !**bad)
            .map(|(oid, _)| *oid)
            .collect();
        if valid.len() > 1 {
            if let Ok(records) = state.storage.bulk_load(&valid) {
                if records.len() == valid.len() {
                    let mut records = records.into_iter();
                    return Ok(invalid
                        .iter()
                        .map(|bad| match (bad, records.next()) {
                            (false, Some(record)) => LoadReply::Record(record),
                            _ => LoadReply::Invalid,
                        })
                        .collect());
                }
            }
        }
        oids.iter()
            .map(|oid| state.load_reply(self.id, *oid))
            .collect()
    }

    /// The oids invalidated for this session since it last synced; clears them.
    pub fn sync(&self) -> Result<Vec<Oid>> {
        let mut state = lock(&self.hub.shared.state);
        self.hub.shared.sync_storage(&mut state)?;
        let invalid = std::mem::take(&mut state.session(self.id)?.invalid);
        Ok(invalid.into_iter().collect())
    }

    /// Starts a commit: waits until no other commit runs, then holds the
    /// commit until the exchange is committed or dropped.
    ///
    /// On a database other processes commit to, the database's commit lock
    /// is taken first (without the state lock: loads go on while it waits),
    /// then the storage syncs: this session's invalidations are then
    /// everything committed anywhere since its own last sync, and stay so
    /// until the exchange ends, whatever other sessions do meanwhile.
    pub(crate) fn begin_commit(&self) -> Result<CommitExchange<'_>> {
        let guard = lock(&self.hub.shared.commit);
        let mut exchange = CommitExchange {
            session: self,
            invalidations: Vec::new(),
            database_lock: self.hub.shared.database_lock.clone(),
            _guard: guard,
        };
        if let Some(database) = &exchange.database_lock {
            database.acquire()?;
        }
        // On an error the exchange is dropped, which releases the lock.
        exchange.invalidations = {
            let mut state = lock(&self.hub.shared.state);
            self.hub.shared.sync_storage(&mut state)?;
            let invalid = std::mem::take(&mut state.session(self.id)?.invalid);
            invalid.into_iter().collect()
        };
        Ok(exchange)
    }

    /// Blocks until this session has invalidations it has not synced
    /// (`Ok(true)`), or `timeout` passes (`Ok(false)`). With `interest`,
    /// only an invalidation of one of those oids counts. It returns at once
    /// when there are some already, and does not take them: the next
    /// `sync` or commit does.
    ///
    /// Sessions wake when another session commits, when a pack removes
    /// records, and (on a storage other processes commit to, PostgreSQL)
    /// when the storage signals another process's commit.
    pub fn wait_for_change(&self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        let shared = &self.hub.shared;
        let deadline = crate::deadline(timeout);
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(shared);
        let mut state = lock(&shared.state);
        if shared.notifier.is_some() {
            self.hub.watch_other_processes();
            // What other processes committed while no one waited (or
            // before the watcher listened).
            if shared.unsynced.swap(false, Ordering::SeqCst) {
                if let Err(e) = shared.sync_storage(&mut state) {
                    shared.unsynced.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        loop {
            let session = state.session(self.id)?;
            let hit = match interest {
                None => !session.invalid.is_empty(),
                Some(oids) => oids.iter().any(|oid| session.invalid.contains(oid)),
            };
            if hit {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Packs the storage (no commit runs meanwhile).
    pub fn pack(&self) -> Result<()> {
        self.hub.with_storage(|s| s.pack())
    }

    /// The hub this session belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// Counts a session in `wait_for_change` while it lives.
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        lock(&self.hub.shared.state).sessions.remove(&self.id);
    }
}

/// A commit in progress. No other session can commit until it is committed
/// or dropped (dropping it abandons the commit).
pub(crate) struct CommitExchange<'a> {
    session: &'a Session,
    invalidations: Vec<Oid>,
    /// Held from `begin_commit` until the storage's `end` or the drop.
    database_lock: Option<Arc<dyn CommitLock>>,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for CommitExchange<'_> {
    fn drop(&mut self) {
        // After a commit the storage's `end` has released it already.
        if let Some(database) = &self.database_lock {
            database.release();
        }
    }
}

impl CommitExchange<'_> {
    /// The oids other sessions committed since this one last synced.
    pub fn invalidations(&self) -> &[Oid] {
        &self.invalidations
    }

    /// The current records of `oids`, for conflict resolution.
    pub fn load_current(&self, oids: &[Oid]) -> Result<Vec<LoadReply>> {
        let mut state = lock(&self.session.hub.shared.state);
        oids.iter()
            .map(|oid| match state.storage.load(*oid) {
                Ok(record) => Ok(LoadReply::Record(record)),
                Err(Error::NotFound(_)) => Ok(LoadReply::Missing),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Stores `records` as one transaction and tells every other session.
    ///
    /// A record naming an oid reserved by another session is refused as a
    /// protocol error: the storage is not touched. Wait on the returned
    /// [`Durability`] before acknowledging.
    pub fn commit(self, records: Vec<(Oid, Vec<u8>)>) -> Result<Durability> {
        let shared = &self.session.hub.shared;
        let id = self.session.id;
        let mut state = lock(&shared.state);
        let oids: HashSet<Oid> = records.iter().map(|(oid, _)| *oid).collect();
        if let Some(oid) = state
            .sessions
            .iter()
            .filter(|(other, _)| **other != id)
            .find_map(|(_, s)| oids.iter().find(|oid| s.unused_oids.contains(oid)))
        {
            return Err(Error::Protocol(ProtocolError::Malformed(format!(
                "commit names oid {oid}, which another client reserved"
            ))));
        }
        // A client that held a handle to an object another client's pack
        // removed must not store a reference to it.
        crate::storage::check_references(&records, |oids| state.storage.missing(oids))?;
        let bytes: usize = records.iter().map(|(_, r)| r.len() + 8).sum();
        state.storage.begin();
        for (oid, record) in records {
            state.storage.store(oid, record)?;
        }
        let durability = state.storage.end(&mut NoConflicts)?;
        for (sid, s) in state.sessions.iter_mut() {
            if *sid == id {
                s.unused_oids.retain(|oid| !oids.contains(oid));
            } else {
                s.invalid.extend(oids.iter().copied());
            }
        }
        shared.changed.notify_all();
        shared
            .bytes_committed
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(durability)
    }
}
