//! [`PersistentDict`]: an ordered map stored as one record.

use super::{Key, Value};
use crate::persistent::merge::{self, MergeConflict, Unionable};
use crate::persistent::per_key::{self, Rule};
use crate::persistent::Persistent;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::btree_map;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, RangeBounds};

/// An ordered map whose entries are all in one record (Durus's
/// `PersistentDict`).
///
/// Hold it as `PRef<PersistentDict<K, V>>` to give it a record of its own,
/// read it through `read()` and change it through `write()`. The whole map
/// is rewritten by each commit that changes it; for large maps use
/// [`BTree`](super::BTree).
///
/// Concurrent commits merge key by key (a three-way merge against the map as
/// this client loaded it): entries added, changed or removed by only one side
/// are all kept; a key added, changed or removed by both sides goes to the
/// per-key rule `M` ([`per_key`](crate::per_key)): by default a conflict,
/// even when both wrote the same value (two increments from 4 both wrote
/// 5: one would be lost). `per_key::Same` merges equal results,
/// `per_key::Sum` adds counters, `per_key::Nested` merges struct values
/// field by field. Values are compared with `PartialEq` (a `PRef` by
/// identity, so a change inside a referenced object is not a change of the
/// map).
///
/// The rest of the read API of `BTreeMap` (ranges, first/last, ...) is there
/// through `Deref`; `DerefMut` gives its mutating API too, which is safe for
/// the same reason: `&mut` comes only from `write()`.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentDict};
///
/// let conn = Connection::new(MemoryStorage::new());
/// let stock: PRef<PersistentDict<String, u32>> = conn.root()?;
/// stock.write()?.insert("pears".into(), 4);
/// conn.commit()?;
/// assert_eq!(stock.read()?.get("pears"), Some(&4));
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "K: Key, V: Value")]
pub struct PersistentDict<K: Key, V: Value, M: Rule<V> = per_key::Strict> {
    map: BTreeMap<K, V>,
    /// The rule for a key changed on both sides (not stored).
    #[serde(skip)]
    rule: PhantomData<M>,
}

impl<K: Key, V: Value, M: Rule<V>> Persistent for PersistentDict<K, V, M> {
    const CLASS_NAME: &'static str = "durus_core::collections::PersistentDict";
    const RESOLVABLE: bool = true;

    fn snapshot(&self) -> Option<Self> {
        Some(self.clone())
    }

    fn resolve(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        Self::merge_union(ours, stored, initial)
    }
}

impl<K: Key, V: Value, M: Rule<V>> Unionable for PersistentDict<K, V, M> {
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        per_key::merge_map(ours, stored, initial, M::merge_key)
            .map_err(|e| merge::in_field(Self::CLASS_NAME, e))
    }
}

impl<K: Key, V: Value> PersistentDict<K, V> {
    /// An empty map with the default per-key rule; a map with another rule
    /// is made with `default()` (as `HashMap::new` is only for the default
    /// hasher, so that `PersistentDict::new()` needs no annotation).
    pub fn new() -> Self {
        PersistentDict::from(BTreeMap::new())
    }
}

impl<K: Key, V: Value, M: Rule<V>> PersistentDict<K, V, M> {
    /// The value for `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    /// A mutable reference to the value for `key`.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(key)
    }

    /// True when `key` has a value.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Sets the value for `key`, returning the previous one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.map.insert(key, value)
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(key)
    }

    /// The entry for `key`, for in-place updates.
    pub fn entry(&mut self, key: K) -> btree_map::Entry<'_, K, V> {
        self.map.entry(key)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> btree_map::Iter<'_, K, V> {
        self.map.iter()
    }

    /// The keys in order.
    pub fn keys(&self) -> btree_map::Keys<'_, K, V> {
        self.map.keys()
    }

    /// The values in key order.
    pub fn values(&self) -> btree_map::Values<'_, K, V> {
        self.map.values()
    }

    /// The entries whose keys are in `range`.
    pub fn range<Q: Ord + ?Sized, R: RangeBounds<Q>>(&self, range: R) -> btree_map::Range<'_, K, V>
    where
        K: Borrow<Q>,
    {
        self.map.range(range)
    }

    /// Keeps only the entries for which `f` is true.
    pub fn retain(&mut self, f: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(f)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.map.clear()
    }

    /// The map as a `BTreeMap`.
    pub fn as_map(&self) -> &BTreeMap<K, V> {
        &self.map
    }

    /// Takes the `BTreeMap` out.
    pub fn into_map(self) -> BTreeMap<K, V> {
        self.map
    }
}

impl<K: Key, V: Value, M: Rule<V>> Default for PersistentDict<K, V, M> {
    fn default() -> Self {
        PersistentDict::from(BTreeMap::new())
    }
}

impl<K: Key, V: Value, M: Rule<V>> Deref for PersistentDict<K, V, M> {
    type Target = BTreeMap<K, V>;

    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<K: Key, V: Value, M: Rule<V>> DerefMut for PersistentDict<K, V, M> {
    fn deref_mut(&mut self) -> &mut BTreeMap<K, V> {
        &mut self.map
    }
}

impl<K: Key + fmt::Debug, V: Value + fmt::Debug, M: Rule<V>> fmt::Debug
    for PersistentDict<K, V, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl<K: Key, V: Value, M: Rule<V>> From<BTreeMap<K, V>> for PersistentDict<K, V, M> {
    fn from(map: BTreeMap<K, V>) -> Self {
        PersistentDict {
            map,
            rule: PhantomData,
        }
    }
}

impl<K: Key, V: Value, M: Rule<V>, const N: usize> From<[(K, V); N]> for PersistentDict<K, V, M> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Key, V: Value, M: Rule<V>> FromIterator<(K, V)> for PersistentDict<K, V, M> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        PersistentDict::from(iter.into_iter().collect::<BTreeMap<K, V>>())
    }
}

impl<K: Key, V: Value, M: Rule<V>> Extend<(K, V)> for PersistentDict<K, V, M> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.map.extend(iter)
    }
}

impl<'a, K: Key, V: Value, M: Rule<V>> IntoIterator for &'a PersistentDict<K, V, M> {
    type Item = (&'a K, &'a V);
    type IntoIter = btree_map::Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Key, V: Value, M: Rule<V>> IntoIterator for PersistentDict<K, V, M> {
    type Item = (K, V);
    type IntoIter = btree_map::IntoIter<K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(entries: &[(u8, u8)]) -> PersistentDict<u8, u8> {
        entries.iter().copied().collect()
    }

    #[test]
    fn merges_key_by_key() {
        let initial = d(&[(1, 1), (2, 2), (3, 3)]);
        let ours = d(&[(1, 10), (2, 2), (3, 3), (4, 4)]);
        let stored = d(&[(1, 1), (3, 3), (5, 5)]);
        let merged = PersistentDict::resolve(&ours, &stored, &initial).unwrap();
        assert_eq!(merged, d(&[(1, 10), (3, 3), (4, 4), (5, 5)]));
    }

    #[test]
    fn same_key_changed_on_both_sides_conflicts() {
        let initial = d(&[(1, 1)]);
        assert!(PersistentDict::resolve(&d(&[(1, 2)]), &d(&[(1, 3)]), &initial).is_err());
        assert!(PersistentDict::resolve(&d(&[(1, 2)]), &d(&[]), &initial).is_err());
        // Equal results too: both read 1 and wrote 2.
        assert!(PersistentDict::resolve(&d(&[(1, 2), (7, 1)]), &d(&[(1, 2)]), &initial).is_err());
        let same = |e: &[(u8, u8)]| {
            e.iter()
                .copied()
                .collect::<PersistentDict<u8, u8, per_key::Same>>()
        };
        let merged =
            PersistentDict::resolve(&same(&[(1, 2), (7, 1)]), &same(&[(1, 2)]), &same(&[(1, 1)]));
        assert_eq!(
            merged.map(PersistentDict::into_map),
            Ok([(1, 2), (7, 1)].into())
        );
    }
}
