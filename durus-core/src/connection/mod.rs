//! The [`Connection`]: the object cache and the transaction over one storage.
//!
//! A connection belongs to one thread (it is neither `Send` nor `Sync`, like
//! the objects it hands out). Share a database between threads with one
//! connection per thread over a [`Hub`](crate::hub::Hub), and between
//! processes through a storage server.

mod commit;
mod context;
mod load;
mod retry;

pub(crate) use context::{count_new_object, decoding_ref, encoding_oid_for};
pub(crate) use retry::{Backoff, DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF};

use crate::cache::Cache;
use crate::error::{ConflictDetail, ConflictReason, Error, Result};
use crate::oid::{Oid, OidMap};
use crate::persistent::{ErasedObj, PRef, Persistent, Slot, Status};
use crate::storage::Storage;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::{Rc, Weak};

/// The default target number of loaded objects in the cache.
pub const DEFAULT_CACHE_SIZE: usize = 100_000;

/// A connection to a storage: the root, the cache, commit and abort.
///
/// As in Durus, a transaction is always open: after `commit` or `abort`
/// the next one begins, and a change made then (through any handle this
/// connection gave out) waits for the next `commit`, or is dropped by the
/// next `abort`. A [`Database`](crate::Database) closes that gap: there, a
/// handle refuses writes between transactions.
pub struct Connection {
    inner: Rc<ConnInner>,
}

pub(crate) struct ConnInner {
    storage: RefCell<Box<dyn Storage>>,
    cache: RefCell<Cache>,
    /// Objects written in this transaction.
    changed: RefCell<OidMap<Rc<dyn ErasedObj>>>,
    /// State as loaded of changed objects of resolvable types (state0).
    state0: RefCell<OidMap<Box<dyn Any>>>,
    /// Records fetched ahead of use (see `Storage::prefetch_hint`). Like a
    /// loaded object, an entry is current as of the last sync: invalidations
    /// remove it.
    prefetched: RefCell<OidMap<Vec<u8>>>,
    /// References of loaded records not prefetched yet, in order: a miss
    /// on one of them fetches it together with those that follow.
    ahead: RefCell<VecDeque<Oid>>,
    /// Oids received from the storage as changed by others and accessed in
    /// this transaction: conflicts, made ghosts by the next abort (or
    /// merged by the commit under way). Never dropped before that.
    invalid: RefCell<HashSet<Oid>>,
    /// Where the transaction stands (see [`TxState`]).
    state: Cell<TxState>,
    /// Objects given an oid by the commit under way (new objects, and a new
    /// root). A commit that fails leaves them here; `abort` detaches them,
    /// so that no object keeps an oid that was never stored.
    attached_new: RefCell<Vec<Rc<dyn ErasedObj>>>,
    /// `root()` was handed oid 0 for a root whose commit has not succeeded.
    root_reserved: Cell<bool>,
    /// Writes are refused: a `Database` connection between its transactions
    /// (a change made now could never be committed, see `Database`).
    writes_closed: Cell<bool>,
    /// Counts commits and aborts; stamps every access.
    serial: Cell<u64>,
    loads: Cell<u64>,
    merges: Cell<u64>,
    this: Weak<ConnInner>,
}

impl Connection {
    /// A connection over `storage` with the default cache size.
    pub fn new(storage: impl Storage + 'static) -> Connection {
        Connection::with_cache_size(Box::new(storage), DEFAULT_CACHE_SIZE)
    }

    /// A connection to a storage server at `address` (`host:port` or a
    /// Unix-domain socket path), with the default cache size and timeouts.
    pub fn connect(address: &str) -> Result<Connection> {
        Connection::connect_with(address, crate::storage::ClientOptions::default())
    }

    /// As [`connect`](Connection::connect), with these timeouts. A request
    /// that times out fails, and the connection is closed
    /// ([`is_closed`](Connection::is_closed)): make a new one.
    pub fn connect_with(
        address: &str,
        options: crate::storage::ClientOptions,
    ) -> Result<Connection> {
        Ok(Connection::new(
            crate::storage::ClientStorage::connect_with(address, options)?,
        ))
    }

    /// A connection over the file at `path` (created when missing), a
    /// [`FileStorage`](crate::FileStorage) with the default options.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Connection> {
        Ok(Connection::new(crate::storage::FileStorage::open(path)?))
    }

    /// A connection over a boxed storage with a cache of `cache_size` objects.
    pub fn with_cache_size(storage: Box<dyn Storage>, cache_size: usize) -> Connection {
        let inner = Rc::new_cyclic(|this| ConnInner {
            storage: RefCell::new(storage),
            cache: RefCell::new(Cache::new(cache_size)),
            changed: RefCell::new(OidMap::default()),
            state0: RefCell::new(OidMap::default()),
            prefetched: RefCell::new(OidMap::default()),
            ahead: RefCell::new(VecDeque::new()),
            invalid: RefCell::new(HashSet::new()),
            state: Cell::new(TxState::Active),
            attached_new: RefCell::new(Vec::new()),
            root_reserved: Cell::new(false),
            writes_closed: Cell::new(false),
            serial: Cell::new(1),
            loads: Cell::new(0),
            merges: Cell::new(0),
            this: this.clone(),
        });
        Connection { inner }
    }

    /// The root object (oid 0), created as `R::default()` and committed on
    /// first use of an empty storage.
    pub fn root<R: Persistent + Default>(&self) -> Result<PRef<R>> {
        match self.get::<R>(Oid::ROOT) {
            Err(Error::NotFound(_)) => {}
            other => return other,
        }
        let inner = &self.inner;
        inner.check_usable()?;
        // Oid 0 stays ours after a failed first commit: no one else gets it.
        if !inner.root_reserved.get() {
            let oid = inner.storage.borrow_mut().new_oid()?;
            if oid != Oid::ROOT {
                // Another client was handed oid 0. Either it made the root
                // by now, or it went away without: then the root is made
                // here (a second client making it too conflicts at commit).
                self.abort()?;
                match self.get::<R>(Oid::ROOT) {
                    Err(Error::NotFound(_)) => {}
                    other => return other,
                }
            }
        }
        inner.root_reserved.set(true);
        let root = PRef::new(R::default());
        let obj: Rc<dyn ErasedObj> = root.0.clone();
        inner.attach(&obj, Oid::ROOT);
        obj.hdr().serial.set(inner.serial());
        inner.attached_new.borrow_mut().push(obj.clone());
        inner.changed.borrow_mut().insert(Oid::ROOT, obj);
        self.commit()?;
        inner.root_reserved.set(false);
        Ok(root)
    }

    /// The object stored under `oid`, loaded. Fails with `NotFound` when
    /// there is none, and with an encoding error when it is not a `T`.
    pub fn get<T: Persistent>(&self, oid: Oid) -> Result<PRef<T>> {
        let inner = &self.inner;
        let cached = inner.cache.borrow().get(oid).is_some();
        if !cached {
            let record = inner.fetch(oid)?;
            let obj = inner.ghost_for::<T>(oid)?;
            let erased: Rc<dyn ErasedObj> = obj.0.clone();
            if let Err(e) = inner.install(&erased, oid, &record) {
                inner.cache.borrow_mut().forget(oid);
                return Err(e);
            }
        }
        let obj = inner.ghost_for::<T>(oid)?;
        obj.read()?;
        Ok(obj)
    }

    /// Stores every changed object, and every new object they reach, as
    /// one transaction: all of it and `Ok`, or none of it and `Err`.
    ///
    /// - `Err(Borrowed)` before anything happens when a guard on a changed
    ///   object is alive that the commit cannot work around (a `write`
    ///   guard, or any guard on an object whose type merges): drop it and
    ///   commit again. Likewise, an error while encoding (a `write` guard on
    ///   a new object it reaches, a state that cannot be encoded) leaves
    ///   nothing done and the transaction open.
    /// - On a conflict nothing is stored: the error names the oids.
    /// - After a conflict or any failure once the storage's `end` began, the
    ///   transaction needs an [`abort`](Connection::abort): until then every
    ///   operation but `abort` fails with `NeedsAbort`, and nothing is stored.
    /// - `Err(OutcomeUnknown)` when the storage failed at a point where the
    ///   commit may have been stored (an fsync failed, a server went away
    ///   before it answered).
    ///
    /// See [`Connection::transaction`] for a bounded retry.
    pub fn commit(&self) -> Result<()> {
        self.inner.commit()
    }

    /// Drops this transaction's changes (changed objects become ghosts),
    /// processes invalidations and shrinks the cache.
    ///
    /// Guards still alive do not stop it: their objects become ghosts all
    /// the same, and are loaded afresh on their next access once the guards
    /// are dropped. It fails only when the storage cannot be asked for
    /// invalidations; the changes are dropped all the same.
    pub fn abort(&self) -> Result<()> {
        self.inner.abort()
    }

    /// Processes invalidations from other clients without ending the
    /// transaction. As at commit, an object changed by another client that
    /// this transaction read or wrote is a conflict (the transaction then
    /// needs an abort); the others become ghosts.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// Blocks until another client commits something this connection has
    /// not seen yet (`Ok(true)`), or `timeout` passes (`Ok(false)`): for
    /// workers that sleep until there is work, instead of polling.
    ///
    /// It returns at once when such a commit happened already (since the
    /// last `abort`, `sync` or `commit`), so a worker that found no work in
    /// a transaction and then waits misses nothing. The change is not
    /// applied: the next [`abort`](Connection::abort) (a new transaction)
    /// or [`sync`](Connection::sync) sees it.
    ///
    /// ```
    /// use durus_core::{Connection, Hub, MemoryStorage, PRef, PersistentList};
    /// use std::time::Duration;
    ///
    /// let hub = Hub::new(MemoryStorage::new());
    /// let worker = Connection::new(hub.storage());
    /// let jobs: PRef<PersistentList<u32>> = worker.root()?;
    /// assert!(!worker.wait_for_change(Duration::from_millis(1))?);
    ///
    /// let producer = Connection::new(hub.storage());
    /// producer.root::<PersistentList<u32>>()?.write()?.push(7);
    /// producer.commit()?;
    ///
    /// assert!(worker.wait_for_change(Duration::from_secs(5))?);
    /// worker.abort()?;
    /// assert_eq!(jobs.read()?.first(), Some(&7));
    /// # Ok::<(), durus_core::Error>(())
    /// ```
    pub fn wait_for_change(&self, timeout: std::time::Duration) -> Result<bool> {
        self.inner
            .storage
            .borrow_mut()
            .wait_for_change(timeout, None)
    }

    /// As [`wait_for_change`](Connection::wait_for_change), but only a
    /// commit that changed one of `oids` (say, a queue's object) counts.
    pub fn wait_for_change_of(&self, oids: &[Oid], timeout: std::time::Duration) -> Result<bool> {
        self.inner
            .storage
            .borrow_mut()
            .wait_for_change(timeout, Some(oids))
    }

    /// True when the transaction needs an [`abort`](Connection::abort)
    /// (after a conflict or a failed commit) before anything else.
    pub fn needs_abort(&self) -> bool {
        self.inner.state.get() != TxState::Active
    }

    /// Removes unreachable objects from the storage (after an abort).
    pub fn pack(&self) -> Result<()> {
        self.abort()?;
        self.inner.storage.borrow_mut().pack()
    }

    /// The target number of loaded objects kept after a commit or abort.
    pub fn cache_size(&self) -> usize {
        self.inner.cache.borrow().target()
    }

    /// Sets the target number of loaded objects.
    pub fn set_cache_size(&self, size: usize) {
        self.inner.cache.borrow_mut().set_target(size);
    }

    /// How many objects this connection holds in memory now, loaded or
    /// ghost (a ghost is a handle whose state is not loaded).
    pub fn objects_in_memory(&self) -> usize {
        self.inner.cache.borrow().count()
    }

    /// How many objects have their state in memory now: what the cache
    /// target ([`Connection::cache_size`]) bounds after a commit or abort.
    pub fn loaded_objects(&self) -> usize {
        self.inner.cache.borrow().loaded_count()
    }

    /// How many object states this connection has read from its storage
    /// since it was opened (a running total: an object evicted and read
    /// again counts twice).
    ///
    /// ```
    /// use durus_core::{Connection, FileStorage, PRef, PersistentList};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-counts-{}.durus", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// {
    ///     let conn = Connection::open(&path)?;
    ///     let root: PRef<PersistentList<PRef<PersistentList<u8>>>> = conn.root()?;
    ///     root.write()?.push(PRef::new(PersistentList::new()));
    ///     conn.commit()?;
    /// }
    /// let conn = Connection::new(FileStorage::open(&path)?);
    /// let root: PRef<PersistentList<PRef<PersistentList<u8>>>> = conn.root()?;
    /// let first = root.read()?[0].clone(); // a ghost until read
    /// assert_eq!((conn.objects_in_memory(), conn.loaded_objects()), (2, 1));
    /// first.read()?;
    /// assert_eq!((conn.loaded_objects(), conn.loads_from_storage()), (2, 2));
    /// # drop(conn);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), durus_core::Error>(())
    /// ```
    pub fn loads_from_storage(&self) -> u64 {
        self.inner.loads.get()
    }

    /// How many objects were merged with another client's commit.
    pub fn merge_count(&self) -> u64 {
        self.inner.merges.get()
    }

    /// The number of commits and aborts so far (plus one).
    pub fn transaction_serial(&self) -> u64 {
        self.inner.serial()
    }

    /// Opens (`false`) or closes (`true`) this connection for writes: a
    /// `Database` closes its connections between transactions, so that a
    /// handle kept past its transaction is refused instead of dropped.
    pub(crate) fn close_writes(&self, closed: bool) {
        self.inner.writes_closed.set(closed);
    }

    /// True when the storage can no longer be used (a server connection
    /// that broke): the connection must be replaced.
    pub fn is_closed(&self) -> bool {
        self.inner.storage.try_borrow().is_ok_and(|s| s.is_closed())
    }

    /// True when the storage was closed because its server did not answer
    /// in time (see [`ClientOptions`](crate::storage::ClientOptions)).
    pub fn timed_out(&self) -> bool {
        self.inner.storage.try_borrow().is_ok_and(|s| s.timed_out())
    }

    /// Runs `f` on the storage (for tools: pack progress, statistics).
    pub fn with_storage<R>(&self, f: impl FnOnce(&mut dyn Storage) -> R) -> R {
        f(self.inner.storage.borrow_mut().as_mut())
    }
}

/// Where the transaction of a connection stands.
///
/// ```text
///   Active --commit()--> Writing --end()--> Merging --> Writing --Ok--> Active
///     |                     |                  |
///     | conflict, failure   +------ Err -------+-----> NeedsAbort --abort()--> Active
///     +-----------------------------------------------> NeedsAbort
/// ```
///
/// Only `Active` allows reads, writes, loads, `sync` and `commit`. A panic
/// that leaves a commit half-way leaves `Writing` or `Merging`, which are
/// treated as `NeedsAbort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxState {
    /// The transaction is open.
    Active,
    /// A commit is encoding and storing objects.
    Writing,
    /// A commit is running merge functions (user code that must not load,
    /// create or change persistent objects).
    Merging,
    /// A conflict or a failure: only `abort` is allowed.
    NeedsAbort,
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        // Loaded objects may refer to each other; dropping their states
        // breaks the cycles.
        let loaded = self.cache.get_mut().take_loaded();
        let changed: Vec<_> = self.changed.get_mut().drain().map(|(_, o)| o).collect();
        for obj in loaded.iter().chain(&changed) {
            obj.ghostify();
        }
        let _ = self.storage.get_mut().close();
    }
}

impl ConnInner {
    pub(crate) fn serial(&self) -> u64 {
        self.serial.get()
    }

    fn rc(&self) -> Result<Rc<ConnInner>> {
        self.this.upgrade().ok_or(Error::WrongConnection(None))
    }

    /// True while writes are refused (see [`Connection::close_writes`]).
    pub(crate) fn writes_closed(&self) -> bool {
        self.writes_closed.get()
    }

    /// `Ok` when the transaction allows reads, writes and loads.
    pub(crate) fn check_usable(&self) -> Result<()> {
        match self.state.get() {
            TxState::Active => Ok(()),
            _ => Err(Error::NeedsAbort),
        }
    }

    /// Gives a new object its oid in this connection.
    fn attach(&self, obj: &Rc<dyn ErasedObj>, oid: Oid) {
        let hdr = obj.hdr();
        hdr.oid.set(Some(oid));
        *hdr.conn.borrow_mut() = self.this.clone();
        self.cache.borrow_mut().insert(oid, obj);
    }

    /// Undoes `attach` for an object whose commit failed.
    fn detach(&self, obj: &Rc<dyn ErasedObj>) {
        let hdr = obj.hdr();
        if let Some(oid) = hdr.oid.take() {
            self.cache.borrow_mut().forget(oid);
        }
        *hdr.conn.borrow_mut() = Weak::new();
        hdr.status.set(Status::Unsaved);
    }

    /// The cached object for `oid`, or a new ghost, as a `T`.
    pub(crate) fn ghost_for<T: Persistent>(&self, oid: Oid) -> Result<PRef<T>> {
        let cached = self.cache.borrow().get(oid);
        if let Some(obj) = cached {
            let class = obj.class_name();
            let any: Rc<dyn Any> = obj;
            return any.downcast::<Slot<T>>().map(PRef).map_err(|_| {
                Error::Encoding(crate::error::EncodingError::WrongClass {
                    oid,
                    expected: T::CLASS_NAME.to_string(),
                    found: class.to_string(),
                })
            });
        }
        let ghost = PRef::<T>::ghost(oid, self.this.clone());
        let obj: Rc<dyn ErasedObj> = ghost.0.clone();
        self.cache.borrow_mut().insert(oid, &obj);
        Ok(ghost)
    }

    /// Records a first write in this transaction.
    pub(crate) fn note_change(&self, obj: Rc<dyn ErasedObj>, snapshot: Option<Box<dyn Any>>) {
        let Some(oid) = obj.hdr().oid.get() else {
            return;
        };
        if let Some(snapshot) = snapshot {
            self.state0.borrow_mut().insert(oid, snapshot);
        }
        self.changed.borrow_mut().insert(oid, obj);
    }

    /// Makes `oid`'s object a ghost (see [`ErasedObj::ghostify`]).
    fn ghostify(&self, oid: Oid, obj: &Rc<dyn ErasedObj>) {
        self.state0.borrow_mut().remove(&oid);
        let released = self.cache.borrow_mut().release(oid);
        obj.ghostify();
        drop(released);
    }

    /// Makes the loaded objects of `oids` ghosts, whether or not they were used.
    fn ghostify_all(&self, oids: impl IntoIterator<Item = Oid>) {
        for oid in oids {
            let obj = self.cache.borrow().get(oid);
            if let Some(obj) = obj {
                if obj.hdr().status.get() != Status::Ghost || obj.is_borrowed() {
                    self.ghostify(oid, &obj);
                }
            }
        }
    }

    /// Durus's `_handle_invalidations`: objects accessed in this transaction
    /// conflict and are kept in `invalid` until the abort; the others become
    /// ghosts. Returns the conflicting oids.
    fn sort_invalidations(&self, oids: &[Oid]) -> Vec<Oid> {
        self.forget_prefetched(oids);
        let serial = self.serial();
        let mut conflicts = Vec::new();
        for oid in oids {
            let Some(obj) = self.cache.borrow().get(*oid) else {
                continue;
            };
            if obj.hdr().serial.get() == serial {
                conflicts.push(*oid);
            } else if obj.hdr().status.get() != Status::Ghost || obj.is_borrowed() {
                self.ghostify(*oid, &obj);
            }
        }
        self.invalid.borrow_mut().extend(conflicts.iter().copied());
        conflicts
    }

    /// Handles invalidations met outside a commit: a conflict (`read_oid`
    /// names the object being loaded) makes the transaction need an abort.
    fn handle_invalidations(&self, oids: &[Oid], read_oid: Option<Oid>) -> Result<()> {
        let conflicts = self.sort_invalidations(oids);
        if conflicts.is_empty() {
            return Ok(());
        }
        // Explained while the transaction still reads as open (no merge
        // was tried).
        let e = self.explain(match read_oid {
            Some(oid) => Error::read_conflict(oid),
            None => Error::write_conflict(conflicts),
        });
        self.state.set(TxState::NeedsAbort);
        Err(e)
    }

    /// Adds to a conflict the class and reason of each oid it does not
    /// explain yet, from what this transaction did with the object.
    pub(crate) fn explain(&self, e: Error) -> Error {
        let Error::Conflict(mut c) = e else {
            return e;
        };
        for oid in &c.oids {
            if c.details.iter().any(|d| d.oid == *oid) {
                continue;
            }
            let class = self
                .cache
                .borrow()
                .get(*oid)
                .map(|o| o.class_name().to_string());
            let written = self.changed.borrow().contains_key(oid);
            let reason = if !written {
                ConflictReason::Read
            } else if !self.state0.borrow().contains_key(oid) {
                ConflictReason::NoRule
            } else if self.state.get() == TxState::Active {
                // `sync` or a load: nothing was merged yet.
                ConflictReason::Other(
                    "was written here and changed by another client before this commit".into(),
                )
            } else {
                ConflictReason::Other(
                    "was written on both sides and not merged (another object of this \
                     commit could not be)"
                        .into(),
                )
            };
            c.details.push(ConflictDetail {
                oid: *oid,
                class,
                reason,
            });
        }
        Error::Conflict(c)
    }

    fn shrink(&self) {
        let victims = self.cache.borrow_mut().pick_evictions(self.serial());
        for obj in victims {
            obj.ghostify();
        }
    }

    /// Ends the transaction: a new serial, and the cache trimmed.
    fn end_transaction(&self) {
        self.shrink();
        self.serial.set(self.serial() + 1);
    }
}
