//! Per-key rules of maps: what a merge does with a key both sides changed.
//!
//! A map merges key by key, three-way against the map as this client
//! loaded it: a key added, changed or removed by one side only takes that
//! side's result. A key that **both** sides changed goes to the map's
//! per-key rule, even when both wrote the same value: two clients that
//! read `"page" -> 4` and wrote 5 made two increments, not one.
//!
//! | rule | on a `BTree` / `PersistentDict` | on a map field | a key changed on both sides |
//! |---|---|---|---|
//! | [`Strict`] | the default | `#[merge(union)]` | a conflict (abort and retry) |
//! | [`Same`] | `PersistentDict<K, V, per_key::Same>` | `#[merge(per_key(same))]` | equal results merge (idempotent values); different ones conflict |
//! | [`Sum`] | `BTree<K, u64, per_key::Sum>`, `per_key::Sum<0>`, `per_key::Sum<0, 100>` | `#[merge(per_key(sum))]`, `#[merge(per_key(sum(min = 0, max = 100)))]` | `ours + (stored - initial)`, a key absent counting as zero; a merged value outside the bounds, or a removal on one side, conflicts |
//! | [`Nested`] | `PersistentDict<K, Stock, per_key::Nested>` | `#[merge(per_key(nested))]` | the value (a struct deriving `Merge`) merges field by field with its own rules; a key added or removed on one side conflicts |
//!
//! A `BTree` adds one rule of its own: a key added by both sides, or
//! removed by both, is a conflict whatever the rule, since the tree's entry
//! count would count it twice (the retry then merges).
//!
//! ```
//! use durus_core::{per_key, Connection, Hub, MemoryStorage, PRef, PersistentDict};
//!
//! type Views = PersistentDict<String, u64, per_key::Sum>;
//! let hub = Hub::new(MemoryStorage::new());
//! let (a, b) = (Connection::new(hub.storage()), Connection::new(hub.storage()));
//! let (va, vb): (PRef<Views>, PRef<Views>) = (a.root()?, b.root()?);
//! *va.write()?.entry("page".into()).or_default() += 1;
//! *vb.write()?.entry("page".into()).or_default() += 1;
//! a.commit()?;
//! b.commit()?; // merged: both increments count
//! assert_eq!(vb.read()?.get("page"), Some(&2));
//! # Ok::<(), durus_core::Error>(())
//! ```

use super::merge::{self, Merge, MergeConflict, Summable};
use crate::collections::{Key, PersistentDict, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

/// What a map's merge does with a key both sides changed (`None`: absent).
///
/// Implemented by [`Strict`], [`Same`], [`Sum`] and [`Nested`]; the
/// supertraits let a map that carries its rule as a type parameter derive
/// `Clone` and `PartialEq`.
#[diagnostic::on_unimplemented(
    message = "the per-key rule `{Self}` cannot merge map values of type `{V}`",
    label = "this per-key rule does not fit the map's values",
    note = "`Strict` and `Same` need `PartialEq + Clone` values, `Sum` numbers, `Nested` a type deriving `Merge`"
)]
pub trait Rule<V>: Copy + Eq + Send + Sync + 'static {
    /// The merged entry of a key that both sides changed from `initial`.
    fn merge_key(
        ours: Option<&V>,
        stored: Option<&V>,
        initial: Option<&V>,
    ) -> Result<Option<V>, MergeConflict>;
}

/// The default: a key changed on both sides is a conflict, even when both
/// wrote the same value (a read-modify-write would be lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Strict;

/// Idempotent values: a key both sides set to the same value (or both
/// removed) merges; the map counterpart of `#[merge(same)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Same;

/// Counters: concurrent changes of one key add up, as `#[merge(sum)]`
/// does for a field. `MIN` and `MAX` bound the merged value (a value
/// outside is a conflict, so the later transaction retries on fresh data
/// and its own check can refuse); left out, they bound nothing. Bounds are
/// integers; a map field takes any literal (`#[merge(per_key(sum(min = 0.5)))]`).
/// A minimum above the maximum is not refused at compile time: every key
/// changed on both sides then conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sum<const MIN: i128 = { i128::MIN }, const MAX: i128 = { i128::MAX }>;

/// Values that are structs deriving `Merge`: a key changed on both sides
/// merges field by field with the struct's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nested;

impl<V: PartialEq + Clone> Rule<V> for Strict {
    fn merge_key(o: Option<&V>, s: Option<&V>, i: Option<&V>) -> Result<Option<V>, MergeConflict> {
        strict(o, s, i)
    }
}

impl<V: PartialEq + Clone> Rule<V> for Same {
    fn merge_key(o: Option<&V>, s: Option<&V>, i: Option<&V>) -> Result<Option<V>, MergeConflict> {
        same(o, s, i)
    }
}

impl<V: Counter, const MIN: i128, const MAX: i128> Rule<V> for Sum<MIN, MAX> {
    fn merge_key(o: Option<&V>, s: Option<&V>, i: Option<&V>) -> Result<Option<V>, MergeConflict> {
        sum_by(o, s, i, |merged| {
            if MIN != i128::MIN && merged.cmp_bound(MIN) == Ordering::Less {
                return Err(below());
            }
            if MAX != i128::MAX && merged.cmp_bound(MAX) == Ordering::Greater {
                return Err(above());
            }
            Ok(merged)
        })
    }
}

impl<V: Merge + PartialEq + Clone> Rule<V> for Nested {
    fn merge_key(o: Option<&V>, s: Option<&V>, i: Option<&V>) -> Result<Option<V>, MergeConflict> {
        nested(o, s, i)
    }
}

/// Numbers a per-key [`Sum`] adds: a zero (`Default`) for a key one side
/// adds, and a comparison with the rule's integer bounds.
#[diagnostic::on_unimplemented(
    message = "a per-key sum adds numbers, and `{Self}` is not one",
    label = "the values of this map cannot be summed per key",
    note = "`per_key::Sum` and `#[merge(per_key(sum))]` are for maps of counters; struct values with rules of their own take `per_key::Nested` or `#[merge(per_key(nested))]`"
)]
pub trait Counter: Summable + Default + Clone {
    /// How this value compares with an integer bound.
    fn cmp_bound(&self, bound: i128) -> Ordering;
}

macro_rules! counter_int {
    ($($t:ty)*) => {$(
        impl Counter for $t {
            fn cmp_bound(&self, bound: i128) -> Ordering {
                // Only a u128 above i128::MAX does not fit: it is above any bound.
                i128::try_from(*self).map_or(Ordering::Greater, |v| v.cmp(&bound))
            }
        }
    )*};
}
counter_int!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize);

macro_rules! counter_float {
    ($($t:ty)*) => {$(
        impl Counter for $t {
            fn cmp_bound(&self, bound: i128) -> Ordering {
                // A merged sum is finite, so the comparison always answers.
                self.partial_cmp(&(bound as $t)).unwrap_or(Ordering::Equal)
            }
        }
    )*};
}
counter_float!(f32 f64);

fn conflict(reason: &str) -> MergeConflict {
    MergeConflict::new("", reason)
}

fn below() -> MergeConflict {
    conflict("the merged sum of a key is below the map's minimum")
}

fn above() -> MergeConflict {
    conflict("the merged sum of a key is above the map's maximum")
}

/// [`Strict`]: one side's change is taken, both sides' is a conflict.
pub fn strict<V: PartialEq + Clone>(
    o: Option<&V>,
    s: Option<&V>,
    i: Option<&V>,
) -> Result<Option<V>, MergeConflict> {
    if o == i {
        Ok(s.cloned())
    } else if s == i {
        Ok(o.cloned())
    } else {
        Err(conflict(
            "a key was changed on both sides (a per-key rule such as `Same` or `Sum` can merge it)",
        ))
    }
}

/// [`Same`]: as [`strict`], and equal results on both sides merge.
pub fn same<V: PartialEq + Clone>(
    o: Option<&V>,
    s: Option<&V>,
    i: Option<&V>,
) -> Result<Option<V>, MergeConflict> {
    if o == s {
        return Ok(s.cloned());
    }
    strict(o, s, i).map_err(|_| conflict("a key was changed differently on both sides"))
}

/// [`Sum`] without bounds, and `#[merge(per_key(sum))]`.
pub fn sum<V: Counter>(
    o: Option<&V>,
    s: Option<&V>,
    i: Option<&V>,
) -> Result<Option<V>, MergeConflict> {
    sum_by(o, s, i, Ok)
}

/// `#[merge(per_key(sum(min = A, max = B)))]`: bounds of the value's type.
pub fn sum_within<V: Counter>(
    o: Option<&V>,
    s: Option<&V>,
    i: Option<&V>,
    min: Option<V>,
    max: Option<V>,
) -> Result<Option<V>, MergeConflict> {
    sum_by(o, s, i, |merged| {
        if min.is_some_and(|min| merged < min) {
            return Err(below());
        }
        if max.is_some_and(|max| merged > max) {
            return Err(above());
        }
        Ok(merged)
    })
}

/// The per-key sum; `check` sees only values merged from both sides.
fn sum_by<V: Summable + Default + Clone>(
    o: Option<&V>,
    s: Option<&V>,
    i: Option<&V>,
    check: impl FnOnce(V) -> Result<V, MergeConflict>,
) -> Result<Option<V>, MergeConflict> {
    if o == i {
        return Ok(s.cloned());
    }
    if s == i {
        return Ok(o.cloned());
    }
    match (o, s) {
        (Some(o), Some(s)) => {
            let zero = V::default();
            let merged = merge::sum(o, s, i.unwrap_or(&zero))?;
            check(merged).map(Some)
        }
        _ => Err(conflict(
            "a counter was removed on one side and changed on the other",
        )),
    }
}

/// [`Nested`]: a value present in all three merges with its own rules.
pub fn nested<V: Merge + PartialEq + Clone>(
    o: Option<&V>,
    s: Option<&V>,
    i: Option<&V>,
) -> Result<Option<V>, MergeConflict> {
    if o == i {
        return Ok(s.cloned());
    }
    if s == i {
        return Ok(o.cloned());
    }
    match (o, s, i) {
        (Some(o), Some(s), Some(i)) => V::merge(o, s, i).map(Some),
        _ => Err(conflict(
            "a key was added or removed on both sides, or removed on one and changed on the other",
        )),
    }
}

/// Maps whose merge goes key by key: `BTreeMap`, `HashMap` and
/// `PersistentDict` (the fields `#[merge(union)]` and
/// `#[merge(per_key(...))]` take).
#[diagnostic::on_unimplemented(
    message = "`#[merge(per_key(...))]` needs a map field, and `{Self}` is not one",
    label = "this field is not a map",
    note = "`per_key` works on BTreeMap, HashMap and PersistentDict; a set takes `#[merge(union)]`"
)]
pub trait Map: Sized {
    /// The values.
    type Value;

    /// Merges `ours` and `stored` key by key, giving `rule` every key
    /// whose entry differs between the three.
    fn merge_keys<F>(
        ours: &Self,
        stored: &Self,
        initial: &Self,
        rule: F,
    ) -> Result<Self, MergeConflict>
    where
        F: FnMut(
            Option<&Self::Value>,
            Option<&Self::Value>,
            Option<&Self::Value>,
        ) -> Result<Option<Self::Value>, MergeConflict>;
}

impl<K: Ord + Clone, V: Clone> Map for BTreeMap<K, V> {
    type Value = V;

    fn merge_keys<F>(
        ours: &Self,
        stored: &Self,
        initial: &Self,
        mut rule: F,
    ) -> Result<Self, MergeConflict>
    where
        F: FnMut(Option<&V>, Option<&V>, Option<&V>) -> Result<Option<V>, MergeConflict>,
    {
        let keys: BTreeSet<&K> = ours
            .keys()
            .chain(stored.keys())
            .chain(initial.keys())
            .collect();
        let mut out = BTreeMap::new();
        for k in keys {
            if let Some(v) = rule(ours.get(k), stored.get(k), initial.get(k))? {
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }
}

impl<K: Eq + Hash + Clone, V: Clone, S: BuildHasher + Default> Map for HashMap<K, V, S> {
    type Value = V;

    fn merge_keys<F>(
        ours: &Self,
        stored: &Self,
        initial: &Self,
        mut rule: F,
    ) -> Result<Self, MergeConflict>
    where
        F: FnMut(Option<&V>, Option<&V>, Option<&V>) -> Result<Option<V>, MergeConflict>,
    {
        let keys: HashSet<&K> = ours
            .keys()
            .chain(stored.keys())
            .chain(initial.keys())
            .collect();
        let mut out = HashMap::with_capacity_and_hasher(keys.len(), S::default());
        for k in keys {
            if let Some(v) = rule(ours.get(k), stored.get(k), initial.get(k))? {
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }
}

impl<K: Key, V: Value, M: Rule<V>> Map for PersistentDict<K, V, M> {
    type Value = V;

    fn merge_keys<F>(
        ours: &Self,
        stored: &Self,
        initial: &Self,
        rule: F,
    ) -> Result<Self, MergeConflict>
    where
        F: FnMut(Option<&V>, Option<&V>, Option<&V>) -> Result<Option<V>, MergeConflict>,
    {
        Map::merge_keys(ours.as_map(), stored.as_map(), initial.as_map(), rule).map(Into::into)
    }
}

/// `#[merge(per_key(rule))]` on a map field, and the merge of every map:
/// keys whose entry is the same in all three stay as they are.
pub fn merge_map<T: Map>(
    ours: &T,
    stored: &T,
    initial: &T,
    rule: impl FnMut(
        Option<&T::Value>,
        Option<&T::Value>,
        Option<&T::Value>,
    ) -> Result<Option<T::Value>, MergeConflict>,
) -> Result<T, MergeConflict> {
    T::merge_keys(ours, stored, initial, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entries: &[(u8, i64)]) -> BTreeMap<u8, i64> {
        entries.iter().copied().collect()
    }

    #[test]
    fn strict_refuses_equal_changes_same_merges_them() {
        let (i, o, s) = (m(&[(1, 4)]), m(&[(1, 5)]), m(&[(1, 5)]));
        assert!(merge_map(&o, &s, &i, strict).is_err());
        assert_eq!(merge_map(&o, &s, &i, same), Ok(m(&[(1, 5)])));
        assert!(merge_map(&o, &m(&[(1, 6)]), &i, same).is_err());
        // Added by both, removed by both.
        assert!(merge_map(&m(&[(2, 1)]), &m(&[(2, 1)]), &m(&[]), strict).is_err());
        assert!(merge_map(&m(&[]), &m(&[]), &i, strict).is_err());
        assert_eq!(merge_map(&m(&[]), &m(&[]), &i, same), Ok(m(&[])));
    }

    #[test]
    fn sum_adds_per_key_and_keeps_bounds() {
        let (i, o, s) = (m(&[(1, 4)]), m(&[(1, 5), (2, 1)]), m(&[(1, 5), (2, 2)]));
        assert_eq!(merge_map(&o, &s, &i, sum), Ok(m(&[(1, 6), (2, 3)])));
        // A removal against a change.
        assert!(merge_map(&m(&[]), &s, &i, sum).is_err());
        // Stock 4, both took 3.
        let (o, s) = (m(&[(1, 1)]), m(&[(1, 1)]));
        assert!(merge_map(&o, &s, &i, |o, s, i| sum_within(o, s, i, Some(0), None)).is_err());
        assert!(<Sum<0> as Rule<i64>>::merge_key(Some(&1), Some(&1), Some(&4)).is_err());
        assert_eq!(
            <Sum<0> as Rule<i64>>::merge_key(Some(&3), Some(&2), Some(&4)),
            Ok(Some(1))
        );
        assert!(<Sum<0, 10> as Rule<u32>>::merge_key(Some(&8), Some(&9), Some(&5)).is_err());
        assert_eq!(
            <Sum as Rule<u128>>::merge_key(Some(&u128::MAX), Some(&0), Some(&1)),
            Ok(Some(u128::MAX - 1))
        );
        assert_eq!(
            <Sum<0> as Rule<f64>>::merge_key(Some(&0.5), Some(&0.5), Some(&1.0)),
            Ok(Some(0.0))
        );
    }
}
