//! The [`Connection`]: the object cache and the transaction over one storage.
//!
//! A connection belongs to one thread (it is neither `Send` nor `Sync`, like
//! the objects it hands out). Share a database between threads with one
//! connection per thread over a [`Hub`](crate::hub::Hub), and between
//! processes through a storage server.

mod context;
mod retry;

pub(crate) use context::{decoding_ref, encoding_oid_for};

use crate::cache::{Cache, OidMap};
use crate::error::{Error, Result};
use crate::oid::Oid;
use crate::persistent::{ErasedObj, PRef, Persistent, Slot, Status};
use crate::record;
use crate::storage::{CommitHandler, Storage};
use context::{DecodeScope, EncodeScope};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::{Rc, Weak};

/// Loads of one oid tried while others keep committing it.
const LOAD_ATTEMPTS: usize = 16;

/// At most this many prefetched records wait to be used.
const MAX_PREFETCHED: usize = 100_000;

/// The default target number of loaded objects in the cache.
pub const DEFAULT_CACHE_SIZE: usize = 100_000;

/// A connection to a storage: the root, the cache, commit and abort.
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
    /// Oids that conflicted; the transaction must be aborted.
    invalid: RefCell<HashSet<Oid>>,
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
    /// Unix-domain socket path), with the default cache size.
    pub fn connect(address: &str) -> Result<Connection> {
        Ok(Connection::new(crate::storage::ClientStorage::connect(
            address,
        )?))
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
        let oid = self.inner.storage.borrow_mut().new_oid()?;
        if oid != Oid::ROOT {
            // Another client made the root first.
            self.abort()?;
            return self.get::<R>(Oid::ROOT);
        }
        let root = PRef::new(R::default());
        let obj: Rc<dyn ErasedObj> = root.0.clone();
        self.inner.attach(&obj, Oid::ROOT);
        obj.hdr().serial.set(self.inner.serial());
        self.inner.changed.borrow_mut().insert(Oid::ROOT, obj);
        self.commit()?;
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

    /// Stores every changed object, and every new object they reach.
    ///
    /// On a conflict nothing is stored: the error names the oids, and the
    /// transaction must be aborted (see [`Connection::transaction`]).
    pub fn commit(&self) -> Result<()> {
        self.inner.commit()
    }

    /// Drops this transaction's changes (changed objects become ghosts),
    /// processes invalidations and shrinks the cache.
    pub fn abort(&self) -> Result<()> {
        self.inner.abort()
    }

    /// Processes invalidations from other clients without ending the transaction.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
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

    /// Objects in memory (loaded and ghosts).
    pub fn cache_count(&self) -> usize {
        self.inner.cache.borrow().count()
    }

    /// Objects with their state in memory.
    pub fn loaded_count(&self) -> usize {
        self.inner.cache.borrow().loaded_count()
    }

    /// How many object states this connection has loaded from storage.
    pub fn load_count(&self) -> u64 {
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

    /// Runs `f` on the storage (for tools: pack progress, statistics).
    pub fn with_storage<R>(&self, f: impl FnOnce(&mut dyn Storage) -> R) -> R {
        f(self.inner.storage.borrow_mut().as_mut())
    }
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        // Loaded objects may refer to each other; dropping their states
        // breaks the cycles.
        let loaded = self.cache.get_mut().take_loaded();
        let changed: Vec<_> = self.changed.get_mut().drain().map(|(_, o)| o).collect();
        for obj in loaded.iter().chain(&changed) {
            let _ = obj.ghostify();
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

    /// Gives a new object its oid in this connection.
    fn attach(&self, obj: &Rc<dyn ErasedObj>, oid: Oid) {
        let hdr = obj.hdr();
        hdr.oid.set(Some(oid));
        *hdr.conn.borrow_mut() = self.this.clone();
        self.cache.borrow_mut().insert(oid, obj);
    }

    /// Undoes `attach` after a failed commit.
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

    /// Loads the state of a ghost.
    pub(crate) fn load_state(&self, obj: Rc<dyn ErasedObj>) -> Result<()> {
        let oid = obj.hdr().oid.get().ok_or(Error::WrongConnection(None))?;
        let record = match self.fetch(oid) {
            // A ghost whose record is gone was removed by a pack.
            Err(Error::NotFound(_)) => return Err(Error::read_conflict(oid)),
            other => other?,
        };
        self.install(&obj, oid, &record)
    }

    /// The stored record of `oid`. When the storage says our copy is
    /// obsolete, invalidations are processed first (a read conflict if the
    /// object was used in this transaction).
    fn fetch(&self, oid: Oid) -> Result<Vec<u8>> {
        if self.invalid.borrow().contains(&oid) {
            return Err(Error::NeedsAbort);
        }
        if let Some(record) = self.take_prefetched(oid) {
            return Ok(record);
        }
        // Others may commit the object again between our sync and load:
        // each round either loads it, or syncs (a read conflict if anything
        // used in this transaction changed), a bounded number of times.
        for _ in 0..LOAD_ATTEMPTS {
            let loaded = self.storage.borrow_mut().load(oid);
            match loaded {
                Err(Error::Conflict(_)) => {
                    let invalid = self.storage.borrow_mut().sync()?;
                    self.handle_invalidations(&invalid, Some(oid))?;
                }
                other => return other,
            }
        }
        Err(Error::read_conflict(oid))
    }

    /// A prefetched record of `oid`. When `oid` waits in `ahead`, it is
    /// fetched now with the references that follow it, in one bulk load.
    fn take_prefetched(&self, oid: Oid) -> Option<Vec<u8>> {
        if let Some(record) = self.prefetched.borrow_mut().remove(&oid) {
            return Some(record);
        }
        let hint = self.storage.borrow().prefetch_hint();
        let batch: Vec<Oid> = {
            let mut ahead = self.ahead.borrow_mut();
            let at = ahead.iter().position(|o| *o == oid)?;
            ahead.drain(..at);
            let n = hint.max(1).min(ahead.len());
            let next: Vec<Oid> = ahead.drain(..n).collect();
            drop(ahead);
            self.wanted(next.into_iter(), hint)
        };
        self.bulk_fetch(batch);
        self.prefetched.borrow_mut().remove(&oid)
    }

    /// Up to `limit` of `oids` that are neither loaded nor fetched yet.
    fn wanted(&self, oids: impl Iterator<Item = Oid>, limit: usize) -> Vec<Oid> {
        let cache = self.cache.borrow();
        let prefetched = self.prefetched.borrow();
        let invalid = self.invalid.borrow();
        oids.filter(|oid| {
            !prefetched.contains_key(oid)
                && !invalid.contains(oid)
                && cache
                    .get(*oid)
                    .is_none_or(|o| o.hdr().status.get() == Status::Ghost)
        })
        .take(limit)
        .collect()
    }

    /// Bulk-loads `oids` into `prefetched`. Best effort: on failure they
    /// are simply loaded one by one later.
    fn bulk_fetch(&self, oids: Vec<Oid>) {
        if oids.is_empty() {
            return;
        }
        let Ok(records) = self.storage.borrow_mut().bulk_load(&oids) else {
            return;
        };
        let mut prefetched = self.prefetched.borrow_mut();
        if prefetched.len() > MAX_PREFETCHED {
            prefetched.clear();
        }
        prefetched.extend(oids.into_iter().zip(records));
    }

    /// Prefetches what a just-loaded record refers to: the first references
    /// now, the rest when one of them is first missed.
    fn prefetch_refs(&self, view: &record::RecordView<'_>) {
        let hint = self.storage.borrow().prefetch_hint();
        if hint == 0 {
            return;
        }
        let mut refs = self.wanted(view.ref_oids(), usize::MAX);
        let rest = refs.split_off(refs.len().min(hint));
        self.bulk_fetch(refs);
        if !rest.is_empty() {
            let mut ahead = self.ahead.borrow_mut();
            ahead.extend(rest);
            let excess = ahead.len().saturating_sub(MAX_PREFETCHED);
            ahead.drain(..excess);
        }
    }

    /// Sets an object's state from its record and keeps it in the cache.
    fn install(&self, obj: &Rc<dyn ErasedObj>, oid: Oid, record: &[u8]) -> Result<()> {
        let view = record::unpack(record)?;
        self.prefetch_refs(&view);
        if view.oid != oid {
            return Err(Error::Encoding(crate::error::EncodingError::Decode {
                oid,
                message: format!("storage returned the record of oid {}", view.oid),
            }));
        }
        {
            let _scope = DecodeScope::enter(self.rc()?);
            obj.decode_into(view.data)?;
        }
        self.loads.set(self.loads.get() + 1);
        self.cache.borrow_mut().keep(oid, obj.clone());
        Ok(())
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

    fn ghostify(&self, oid: Oid, obj: &Rc<dyn ErasedObj>) -> Result<()> {
        self.state0.borrow_mut().remove(&oid);
        let released = self.cache.borrow_mut().release(oid);
        let out = obj.ghostify();
        drop(released);
        out
    }

    /// Durus's `_handle_invalidations`: objects accessed in this transaction
    /// conflict; the others become ghosts. Returns the conflicting oids.
    fn conflicting(&self, oids: &[Oid]) -> Result<Vec<Oid>> {
        self.forget_prefetched(oids);
        let serial = self.serial();
        let mut conflicts = Vec::new();
        for oid in oids {
            let Some(obj) = self.cache.borrow().get(*oid) else {
                continue;
            };
            if obj.hdr().serial.get() == serial {
                conflicts.push(*oid);
            } else if obj.hdr().status.get() != Status::Ghost {
                self.ghostify(*oid, &obj)?;
            }
        }
        Ok(conflicts)
    }

    fn handle_invalidations(&self, oids: &[Oid], read_oid: Option<Oid>) -> Result<()> {
        let conflicts = self.conflicting(oids)?;
        if conflicts.is_empty() {
            return Ok(());
        }
        self.invalid.borrow_mut().extend(conflicts.iter().copied());
        match read_oid {
            Some(oid) => Err(Error::read_conflict(oid)),
            None => Err(Error::write_conflict(conflicts)),
        }
    }

    fn forget_prefetched(&self, oids: &[Oid]) {
        let mut prefetched = self.prefetched.borrow_mut();
        if !prefetched.is_empty() {
            for oid in oids {
                prefetched.remove(oid);
            }
        }
    }

    fn sync(&self) -> Result<()> {
        let invalid = self.storage.borrow_mut().sync()?;
        self.forget_prefetched(&invalid);
        let mut all: Vec<Oid> = self.invalid.borrow_mut().drain().collect();
        all.extend(invalid);
        for oid in all {
            let obj = self.cache.borrow().get(oid);
            if let Some(obj) = obj {
                if obj.hdr().status.get() != Status::Ghost {
                    self.ghostify(oid, &obj)?;
                }
            }
        }
        Ok(())
    }

    fn shrink(&self) -> Result<()> {
        let victims = self.cache.borrow_mut().pick_evictions(self.serial());
        for obj in victims {
            obj.ghostify()?;
        }
        Ok(())
    }

    fn end_transaction(&self) -> Result<()> {
        let out = self.shrink();
        self.serial.set(self.serial() + 1);
        out
    }

    fn abort(&self) -> Result<()> {
        let changed: Vec<_> = self.changed.borrow_mut().drain().collect();
        let mut first_err = None;
        for (oid, obj) in changed {
            if let Err(e) = self.ghostify(oid, &obj) {
                first_err.get_or_insert(e);
            }
        }
        self.state0.borrow_mut().clear();
        if let Err(e) = self.sync() {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.end_transaction() {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn commit(&self) -> Result<()> {
        if !self.invalid.borrow().is_empty() {
            return Err(Error::NeedsAbort);
        }
        if self.changed.borrow().is_empty() {
            self.sync()?;
            return self.end_transaction();
        }
        let mut queue: Vec<Rc<dyn ErasedObj>> = self.changed.borrow().values().cloned().collect();
        let mut stored: Vec<Rc<dyn ErasedObj>> = Vec::with_capacity(queue.len());
        let mut new_objects: Vec<Rc<dyn ErasedObj>> = Vec::new();
        self.storage.borrow_mut().begin();
        let written = self.write_objects(&mut queue, &mut stored, &mut new_objects);
        let mut handler = Resolver {
            conn: self,
            merged: Vec::new(),
        };
        let result = written.and_then(|()| {
            let durability = self.storage.borrow_mut().end(&mut handler)?;
            durability.wait()
        });
        if let Err(e) = result {
            for obj in &new_objects {
                self.detach(obj);
            }
            return Err(e);
        }
        self.merges
            .set(self.merges.get() + handler.merged.len() as u64);
        for (obj, state) in handler.merged {
            obj.replace_state(state)?;
        }
        for obj in stored {
            obj.hdr().status.set(Status::Saved);
            if let Some(oid) = obj.hdr().oid.get() {
                self.cache.borrow_mut().keep(oid, obj);
            }
        }
        self.changed.borrow_mut().clear();
        self.state0.borrow_mut().clear();
        self.end_transaction()
    }

    /// Encodes and stores the queued objects and the new objects they reach.
    fn write_objects(
        &self,
        queue: &mut Vec<Rc<dyn ErasedObj>>,
        stored: &mut Vec<Rc<dyn ErasedObj>>,
        new_objects: &mut Vec<Rc<dyn ErasedObj>>,
    ) -> Result<()> {
        let mut seen: HashSet<Oid> = HashSet::with_capacity(queue.len());
        let scope = EncodeScope::enter(self.rc()?);
        while let Some(obj) = queue.pop() {
            let oid = obj.hdr().oid.get().ok_or(Error::WrongConnection(None))?;
            if !seen.insert(oid) {
                continue;
            }
            let data = obj.encode();
            let (refs, found) = scope.take();
            for new in found {
                new.hdr().serial.set(self.serial());
                new_objects.push(new.clone());
                queue.push(new);
            }
            let rec = record::pack(oid, &data?, &refs)?;
            self.storage.borrow_mut().store(oid, rec)?;
            stored.push(obj);
        }
        Ok(())
    }

    /// An oid for a reference met while encoding: a new object gets one now.
    fn oid_for_ref(&self, obj: &Rc<dyn ErasedObj>) -> Result<(Oid, bool)> {
        let hdr = obj.hdr();
        if let Some(oid) = hdr.oid.get() {
            let same = hdr.conn.borrow().as_ptr() == self.this.as_ptr();
            return if same {
                Ok((oid, false))
            } else {
                Err(Error::WrongConnection(Some(oid)))
            };
        }
        let oid = self.storage.borrow_mut().new_oid()?;
        self.attach(obj, oid);
        Ok((oid, true))
    }
}

/// The connection's part in a commit: conflict checks and merges.
struct Resolver<'a> {
    conn: &'a ConnInner,
    /// Merged states, installed once the commit succeeds.
    merged: Vec<(Rc<dyn ErasedObj>, Box<dyn Any>)>,
}

impl CommitHandler for Resolver<'_> {
    fn invalidated(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        let conn = self.conn;
        let conflicts = conn.conflicting(oids)?;
        if conflicts.is_empty() {
            return Ok(conflicts);
        }
        let resolvable = {
            let changed = conn.changed.borrow();
            let state0 = conn.state0.borrow();
            conflicts
                .iter()
                .all(|oid| changed.contains_key(oid) && state0.contains_key(oid))
        };
        if resolvable {
            return Ok(conflicts);
        }
        conn.invalid.borrow_mut().extend(conflicts.iter().copied());
        Err(Error::write_conflict(conflicts))
    }

    fn resolve(&mut self, current: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        let conn = self.conn;
        let all: Vec<Oid> = current.iter().map(|(oid, _)| *oid).collect();
        let merged = self.merge_all(current);
        if merged.is_err() {
            conn.invalid.borrow_mut().extend(all);
        }
        merged
    }
}

impl Resolver<'_> {
    fn merge_all(&mut self, current: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        let conn = self.conn;
        let rc = conn.rc()?;
        let mut out = Vec::with_capacity(current.len());
        let mut merged = Vec::with_capacity(current.len());
        for (oid, rec) in current {
            let view = record::unpack(&rec)?;
            let obj = conn
                .changed
                .borrow()
                .get(&oid)
                .cloned()
                .ok_or_else(|| Error::write_conflict(vec![oid]))?;
            let data = {
                let state0 = conn.state0.borrow();
                let initial = state0
                    .get(&oid)
                    .ok_or_else(|| Error::write_conflict(vec![oid]))?;
                let _decode = DecodeScope::enter(rc.clone());
                let encode = EncodeScope::enter(rc.clone());
                let (data, state) = obj.resolve(view.data, initial.as_ref())?;
                let (refs, found) = encode.take();
                if !found.is_empty() {
                    // A merge cannot bring in objects the transaction did not store.
                    return Err(Error::write_conflict(vec![oid]));
                }
                merged.push((obj, state));
                record::pack(oid, &data, &refs)?
            };
            out.push((oid, data));
        }
        self.merged = merged;
        Ok(out)
    }
}
