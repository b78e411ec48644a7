//! The identity cache: one in-memory object per oid, and LRU eviction.
//!
//! `objects` maps every oid with a live object (loaded or ghost) to a weak
//! reference: identity without keeping anything alive. `loaded` holds the
//! objects that have state, strongly, so a loaded object survives its
//! handles being dropped, until `shrink` turns it back into a ghost.

use crate::oid::Oid;
use crate::persistent::{ErasedObj, Status};
use std::rc::{Rc, Weak};

// Kept for `connection/`, which imports the map from here.
pub(crate) use crate::oid::OidMap;

pub(crate) struct Cache {
    objects: OidMap<Weak<dyn ErasedObj>>,
    loaded: OidMap<Rc<dyn ErasedObj>>,
    target: usize,
}

impl Cache {
    pub(crate) fn new(target: usize) -> Cache {
        Cache {
            objects: OidMap::default(),
            loaded: OidMap::default(),
            target: target.max(1),
        }
    }

    pub(crate) fn get(&self, oid: Oid) -> Option<Rc<dyn ErasedObj>> {
        self.objects.get(&oid)?.upgrade()
    }

    /// Records `obj` as the object for `oid` (weakly).
    pub(crate) fn insert(&mut self, oid: Oid, obj: &Rc<dyn ErasedObj>) {
        self.objects.insert(oid, Rc::downgrade(obj));
    }

    /// Keeps a loaded object alive until it is evicted.
    pub(crate) fn keep(&mut self, oid: Oid, obj: Rc<dyn ErasedObj>) {
        self.loaded.insert(oid, obj);
    }

    /// Stops keeping `oid`'s object (it became a ghost).
    pub(crate) fn release(&mut self, oid: Oid) -> Option<Rc<dyn ErasedObj>> {
        self.loaded.remove(&oid)
    }

    /// Forgets `oid` entirely (a new object whose commit failed).
    pub(crate) fn forget(&mut self, oid: Oid) {
        self.objects.remove(&oid);
        self.loaded.remove(&oid);
    }

    pub(crate) fn target(&self) -> usize {
        self.target
    }

    pub(crate) fn set_target(&mut self, target: usize) {
        self.target = target.max(1);
    }

    /// Objects in memory, loaded or ghost.
    pub(crate) fn count(&self) -> usize {
        self.objects
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Objects with their state in memory.
    pub(crate) fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    /// Every object kept loaded, to be turned into ghosts (closing).
    pub(crate) fn take_loaded(&mut self) -> Vec<Rc<dyn ErasedObj>> {
        self.loaded.drain().map(|(_, obj)| obj).collect()
    }

    /// Picks the least recently used saved objects to evict so that at most
    /// `target` stay loaded. Objects used in transaction `current`, changed
    /// or borrowed ones are never picked. The caller turns them into ghosts.
    pub(crate) fn pick_evictions(&mut self, current: u64) -> Vec<Rc<dyn ErasedObj>> {
        let excess = self.loaded.len().saturating_sub(self.target);
        if excess == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<(u64, Oid)> = self
            .loaded
            .iter()
            .filter(|(_, obj)| {
                let hdr = obj.hdr();
                hdr.status.get() == Status::Saved && hdr.serial.get() != current
            })
            .map(|(oid, obj)| (obj.hdr().serial.get(), *oid))
            .collect();
        if candidates.len() > excess {
            candidates.select_nth_unstable(excess);
            candidates.truncate(excess);
        }
        let victims: Vec<_> = candidates
            .into_iter()
            .filter_map(|(_, oid)| {
                let borrowed = self.loaded.get(&oid).is_none_or(|o| o.is_borrowed());
                if borrowed {
                    None
                } else {
                    self.loaded.remove(&oid)
                }
            })
            .collect();
        if self.objects.len() > 2 * (self.loaded.len() + victims.len()) + 1024 {
            self.objects.retain(|_, w| w.strong_count() > 0);
        }
        victims
    }
}
