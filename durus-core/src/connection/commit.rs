//! Commit, abort and sync: the transaction's end, on every path.
//!
//! A commit runs in two halves. Before the point of no return (the
//! storage's `end` and its durability wait) everything that can fail is
//! done: guards are checked, objects encoded, conflicts sorted, merge
//! functions run. A failure there leaves nothing stored and the
//! transaction needing an abort. After it, only bookkeeping that cannot
//! fail remains: merged states installed, statuses set, the cache trimmed.

use super::context::{DecodeScope, EncodeScope};
use super::{ConnInner, TxState};
use crate::error::{ConflictReason, Error, Result};
use crate::oid::{Oid, OidSet};
use crate::persistent::{ErasedObj, Status};
use crate::record;
use crate::storage::CommitHandler;
use std::any::Any;
use std::rc::Rc;

impl ConnInner {
    pub(super) fn sync(&self) -> Result<()> {
        self.check_usable()?;
        let invalid = self.storage.borrow_mut().sync()?;
        self.handle_invalidations(&invalid, None)
    }

    pub(super) fn abort(&self) -> Result<()> {
        let changed: Vec<_> = self.changed.borrow_mut().drain().collect();
        for (oid, obj) in &changed {
            self.ghostify(*oid, obj);
        }
        drop(changed);
        self.state0.borrow_mut().clear();
        // New objects of a commit that failed lose the oids they were given.
        let attached: Vec<_> = self.attached_new.borrow_mut().drain(..).collect();
        for obj in &attached {
            self.detach(obj);
        }
        let conflicts: Vec<Oid> = self.invalid.borrow_mut().drain().collect();
        self.ghostify_all(conflicts);
        self.state.set(TxState::Active);
        // Whatever the storage answers, this transaction is over.
        let synced = self.storage.borrow_mut().sync();
        if let Ok(oids) = &synced {
            self.forget_prefetched(oids);
            self.ghostify_all(oids.iter().copied());
        }
        self.end_transaction();
        synced.map(drop)
    }

    pub(super) fn commit(&self) -> Result<()> {
        self.check_usable()?;
        if self.changed.borrow().is_empty() {
            // Nothing to store: like Durus's `_sync` at a commit, the
            // invalidations end the transaction without a conflict.
            let synced = self.storage.borrow_mut().sync();
            let oids = synced.inspect_err(|_| self.state.set(TxState::NeedsAbort))?;
            self.forget_prefetched(&oids);
            self.ghostify_all(oids);
            self.end_transaction();
            return Ok(());
        }
        self.check_guards()?;
        self.state.set(TxState::Writing);
        match self.store_and_end() {
            Ok(merged) => {
                self.committed(merged);
                Ok(())
            }
            Err(Failed::Before(e)) => {
                self.state.set(TxState::Active);
                Err(e)
            }
            Err(Failed::During(e)) => {
                self.state.set(TxState::NeedsAbort);
                Err(self.explain(e))
            }
        }
    }

    /// Refuses, before anything happens, a commit that would have to change
    /// an object a guard holds: a `write` guard (its state cannot be
    /// encoded) or any guard on an object that may be merged.
    fn check_guards(&self) -> Result<()> {
        let changed = self.changed.borrow();
        let state0 = self.state0.borrow();
        for (oid, obj) in changed.iter() {
            let in_use = if state0.contains_key(oid) {
                obj.is_borrowed()
            } else {
                obj.is_borrowed_mut()
            };
            if in_use {
                return Err(Error::Borrowed(Some(*oid)));
            }
        }
        Ok(())
    }

    /// The first half of a commit: everything that can fail. Returns the
    /// stored objects and the merged states to install.
    fn store_and_end(&self) -> Result<Stored, Failed> {
        let mut queue: Vec<Rc<dyn ErasedObj>> = self.changed.borrow().values().cloned().collect();
        let mut stored: Vec<Rc<dyn ErasedObj>> = Vec::with_capacity(queue.len());
        let attached_before = self.attached_new.borrow().len();
        self.storage.borrow_mut().begin();
        if let Err(e) = self.write_objects(&mut queue, &mut stored) {
            // Nothing reached the storage's `end`: nothing happened, and
            // the transaction goes on (a guard on a new object, a state
            // that cannot be encoded: fix it and commit again).
            self.storage.borrow_mut().begin();
            let new: Vec<_> = self.attached_new.borrow_mut().split_off(attached_before);
            for obj in &new {
                self.detach(obj);
            }
            return Err(Failed::Before(e));
        }
        let mut handler = Resolver {
            conn: self,
            merged: Vec::new(),
        };
        let durability = self.storage.borrow_mut().end(&mut handler)?;
        durability.wait()?;
        Ok(Stored {
            objects: stored,
            merged: handler.merged,
        })
    }

    /// The second half of a commit, after the point of no return: nothing
    /// here can fail.
    fn committed(&self, done: Stored) {
        self.merges
            .set(self.merges.get() + done.merged.len() as u64);
        for (obj, state) in done.merged {
            obj.replace_state(state);
        }
        for obj in done.objects {
            if obj.hdr().status.get() != Status::Ghost {
                obj.hdr().status.set(Status::Saved);
                if let Some(oid) = obj.hdr().oid.get() {
                    self.cache.borrow_mut().keep(oid, obj);
                }
            }
        }
        // Every conflict of a successful commit was merged.
        self.invalid.borrow_mut().clear();
        self.changed.borrow_mut().clear();
        self.state0.borrow_mut().clear();
        self.attached_new.borrow_mut().clear();
        self.root_reserved.set(false);
        self.state.set(TxState::Active);
        self.end_transaction();
    }

    /// Encodes and stores the queued objects and the new objects they reach.
    fn write_objects(
        &self,
        queue: &mut Vec<Rc<dyn ErasedObj>>,
        stored: &mut Vec<Rc<dyn ErasedObj>>,
    ) -> Result<()> {
        let mut seen = OidSet::with_capacity_and_hasher(queue.len(), Default::default());
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
                queue.push(new);
            }
            let rec = record::pack(oid, &data?, &refs)?;
            self.storage.borrow_mut().store(oid, rec)?;
            stored.push(obj);
        }
        Ok(())
    }

    /// An oid for a reference met while encoding: a new object gets one now.
    pub(super) fn oid_for_ref(&self, obj: &Rc<dyn ErasedObj>) -> Result<(Oid, bool)> {
        let hdr = obj.hdr();
        if let Some(oid) = hdr.oid.get() {
            let same = hdr.conn.borrow().as_ptr() == self.this.as_ptr();
            return if same {
                Ok((oid, false))
            } else {
                Err(Error::WrongConnection(Some(oid)))
            };
        }
        if self.state.get() != TxState::Writing {
            // A merge function made a new object: the merge cannot store it.
            return Err(Error::write_conflict(Vec::new()));
        }
        let oid = self
            .storage
            .try_borrow_mut()
            .map_err(|_| Error::NeedsAbort)?
            .new_oid()?;
        self.attach(obj, oid);
        self.attached_new.borrow_mut().push(obj.clone());
        Ok((oid, true))
    }
}

/// Where a commit failed: before anything reached the storage's `end`
/// (nothing happened; the transaction goes on), or during or after it (the
/// transaction needs an abort).
enum Failed {
    Before(Error),
    During(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::During(e)
    }
}

/// What a commit stored: the objects, and the merged states to install.
struct Stored {
    objects: Vec<Rc<dyn ErasedObj>>,
    merged: Vec<(Rc<dyn ErasedObj>, Box<dyn Any>)>,
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
        let conflicts = conn.sort_invalidations(oids);
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
            Ok(conflicts)
        } else {
            Err(Error::write_conflict(conflicts))
        }
    }

    fn resolve(&mut self, current: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        let conn = self.conn;
        conn.state.set(TxState::Merging);
        let merged = self.merge_all(current);
        conn.state.set(TxState::Writing);
        merged
    }
}

impl Resolver<'_> {
    fn merge_all(&mut self, current: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        let conn = self.conn;
        let rc = conn.rc()?;
        let asked: Vec<Oid> = conn.invalid.borrow().iter().copied().collect();
        let mut out = Vec::with_capacity(current.len());
        let mut merged = Vec::with_capacity(current.len());
        for oid in asked {
            // A conflicting object with no current record was removed (by a
            // pack): there is nothing to merge with.
            let Some((_, rec)) = current.iter().find(|(o, _)| *o == oid) else {
                let class = conn.cache.borrow().get(oid).map(|o| o.class_name());
                return Err(Error::explained_conflict(
                    Some(oid),
                    class.unwrap_or("?"),
                    ConflictReason::Other("was removed on the other side (by a pack)".into()),
                ));
            };
            let view = record::unpack(rec)?;
            let obj = conn
                .changed
                .borrow()
                .get(&oid)
                .cloned()
                .ok_or_else(|| Error::write_conflict(vec![oid]))?;
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
                return Err(Error::explained_conflict(
                    Some(oid),
                    obj.class_name(),
                    ConflictReason::Other(
                        "its merged state refers to new objects, which a merge cannot store".into(),
                    ),
                ));
            }
            merged.push((obj, state));
            out.push((oid, record::pack(oid, &data, &refs)?));
        }
        self.merged = merged;
        Ok(out)
    }
}
