//! [`PersistentSet`]: an ordered set stored as one record.

use super::Key;
use crate::persistent::merge::{self, MergeConflict, Unionable};
use crate::persistent::Persistent;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::btree_set;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// An ordered set whose elements are all in one record (Durus's
/// `PersistentSet`).
///
/// Hold it as `PRef<PersistentSet<T>>`; read through `read()`, change through
/// `write()`. Concurrent commits always merge: the elements added by either
/// side are added and the elements removed by either side are removed
/// (relative to the set as this client loaded it). An element cannot be
/// changed "differently" on two sides, so sets never conflict with each
/// other.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentSet};
///
/// let conn = Connection::new(MemoryStorage::new());
/// let tags: PRef<PersistentSet<String>> = conn.root()?;
/// tags.write()?.insert("rust".into());
/// conn.commit()?;
/// assert!(tags.read()?.contains("rust"));
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "T: Key")]
pub struct PersistentSet<T: Key> {
    set: BTreeSet<T>,
}

impl<T: Key> Persistent for PersistentSet<T> {
    const CLASS_NAME: &'static str = "durus_core::collections::PersistentSet";
    const RESOLVABLE: bool = true;

    fn snapshot(&self) -> Option<Self> {
        Some(self.clone())
    }

    fn resolve(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        Self::merge_union(ours, stored, initial)
    }
}

impl<T: Key> Unionable for PersistentSet<T> {
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        merge::union(&ours.set, &stored.set, &initial.set).map(|set| PersistentSet { set })
    }
}

impl<T: Key> PersistentSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        PersistentSet {
            set: BTreeSet::new(),
        }
    }

    /// Adds `value`; false when it was already there.
    pub fn insert(&mut self, value: T) -> bool {
        self.set.insert(value)
    }

    /// Removes `value`; false when it was not there.
    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.set.remove(value)
    }

    /// True when `value` is in the set.
    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.set.contains(value)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when there is no element.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> btree_set::Iter<'_, T> {
        self.set.iter()
    }

    /// Keeps only the elements for which `f` is true.
    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.set.retain(f)
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.set.clear()
    }

    /// The set as a `BTreeSet`.
    pub fn as_set(&self) -> &BTreeSet<T> {
        &self.set
    }

    /// Takes the `BTreeSet` out.
    pub fn into_set(self) -> BTreeSet<T> {
        self.set
    }
}

impl<T: Key> Default for PersistentSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Key> Deref for PersistentSet<T> {
    type Target = BTreeSet<T>;

    fn deref(&self) -> &BTreeSet<T> {
        &self.set
    }
}

impl<T: Key> DerefMut for PersistentSet<T> {
    fn deref_mut(&mut self) -> &mut BTreeSet<T> {
        &mut self.set
    }
}

impl<T: Key + fmt::Debug> fmt::Debug for PersistentSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.set.iter()).finish()
    }
}

impl<T: Key> From<BTreeSet<T>> for PersistentSet<T> {
    fn from(set: BTreeSet<T>) -> Self {
        PersistentSet { set }
    }
}

impl<T: Key, const N: usize> From<[T; N]> for PersistentSet<T> {
    fn from(values: [T; N]) -> Self {
        values.into_iter().collect()
    }
}

impl<T: Key> FromIterator<T> for PersistentSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        PersistentSet {
            set: iter.into_iter().collect(),
        }
    }
}

impl<T: Key> Extend<T> for PersistentSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.set.extend(iter)
    }
}

impl<'a, T: Key> IntoIterator for &'a PersistentSet<T> {
    type Item = &'a T;
    type IntoIter = btree_set::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.set.iter()
    }
}

impl<T: Key> IntoIterator for PersistentSet<T> {
    type Item = T;
    type IntoIter = btree_set::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.set.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_apply() {
        let initial = PersistentSet::from([1, 2, 3]);
        let ours = PersistentSet::from([1, 2, 4]);
        let stored = PersistentSet::from([2, 3, 5]);
        let merged = PersistentSet::resolve(&ours, &stored, &initial).unwrap();
        assert_eq!(merged, PersistentSet::from([2, 4, 5]));
    }
}
