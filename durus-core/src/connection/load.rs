//! Loading objects: from the storage, or from records fetched ahead.

use super::context::{new_objects_made, DecodeScope};
use super::ConnInner;
use crate::error::{Error, Result};
use crate::oid::Oid;
use crate::persistent::{ErasedObj, Status};
use crate::record;
use std::rc::Rc;

/// Loads of one oid tried while others keep committing it.
const LOAD_ATTEMPTS: usize = 16;

/// At most this many prefetched records wait to be used.
const MAX_PREFETCHED: usize = 100_000;

impl ConnInner {
    /// Loads the state of a ghost.
    pub(crate) fn load_state(&self, obj: Rc<dyn ErasedObj>) -> Result<()> {
        let oid = obj.hdr().oid.get().ok_or(Error::WrongConnection(None))?;
        let record = match self.fetch(oid) {
            // A ghost whose record is gone was removed by a pack: a conflict
            // like any other, the transaction needs an abort.
            Err(Error::NotFound(_)) => {
                self.invalid.borrow_mut().insert(oid);
                self.state.set(super::TxState::NeedsAbort);
                let mut e = Error::read_conflict(oid);
                if let Error::Conflict(c) = &mut e {
                    c.details.push(crate::error::ConflictDetail {
                        oid,
                        class: Some(obj.class_name().to_string()),
                        reason: crate::error::ConflictReason::Other(
                            "was removed by a pack on the other side".into(),
                        ),
                    });
                }
                return Err(e);
            }
            other => other?,
        };
        self.install(&obj, oid, &record)
    }

    /// The stored record of `oid`. When the storage says our copy is
    /// obsolete, invalidations are processed first (a read conflict if the
    /// object was used in this transaction).
    pub(super) fn fetch(&self, oid: Oid) -> Result<Vec<u8>> {
        self.check_usable()?;
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
    ///
    /// Decoding may make new persistent objects (a field added to the type
    /// since the record was written, defaulting to a new `BTree`, say). The
    /// object is then marked changed, so that the next commit stores it
    /// with them, and what is put into them is not lost; it is not merged
    /// with another client's commit of it (that is a conflict).
    pub(super) fn install(&self, obj: &Rc<dyn ErasedObj>, oid: Oid, record: &[u8]) -> Result<()> {
        let view = record::unpack(record)?;
        self.prefetch_refs(&view);
        if view.oid != oid {
            return Err(Error::Encoding(crate::error::EncodingError::Decode {
                oid,
                message: format!("storage returned the record of oid {}", view.oid),
            }));
        }
        let made_before = new_objects_made();
        {
            let _scope = DecodeScope::enter(self.rc()?);
            obj.decode_into(view.data)?;
        }
        self.loads.set(self.loads.get() + 1);
        self.cache.borrow_mut().keep(oid, obj.clone());
        if new_objects_made() != made_before {
            // No snapshot: its state as loaded already holds the new
            // objects, so a merge would take a field holding one as
            // unchanged and drop what was put into it. A concurrent commit
            // of the object is a conflict instead.
            obj.hdr().status.set(Status::Unsaved);
            self.note_change(obj.clone(), None);
        }
        Ok(())
    }
}

impl ConnInner {
    /// Drops prefetched records of oids that others changed.
    pub(super) fn forget_prefetched(&self, oids: &[Oid]) {
        let mut prefetched = self.prefetched.borrow_mut();
        if !prefetched.is_empty() {
            for oid in oids {
                prefetched.remove(oid);
            }
        }
    }
}
