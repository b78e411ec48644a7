//! Merge rules for concurrent commits of one object (conflict resolution).
//!
//! When two clients commit the same object, the later commit can be merged
//! field by field instead of failing: `merged = resolve(ours, stored,
//! initial)`, where `initial` is the state this client loaded (state0) and
//! `stored` is what the other client committed. Each rule is a pure
//! function of the three values of a field:
//!
//! | rule | merged value |
//! |---|---|
//! | `sum` | `ours + (stored - initial)`; overflow or a non-finite float is a conflict |
//! | `sum(min = A, max = B)` | as `sum`; a merged value below `A` or above `B` is a conflict (either bound may be left out) |
//! | `union` | sets and maps: both sides' additions and removals relative to `initial`; a map key changed on both sides is a conflict, even to the same value |
//! | `per_key(same)`, `per_key(sum)`, `per_key(sum(min = A, max = B))`, `per_key(nested)` | maps: as `union`, and a key changed on both sides merges by the rule given (see [`per_key`]) |
//! | `ours` / `theirs` | this client's value / the stored value |
//! | `max` / `min` | the larger / smaller of `ours` and `stored` |
//! | `nested` | a struct deriving `Merge` merges its own fields |
//! | `with = f` | `f(&ours, &stored, &initial) -> Result<T, MergeConflict>` |
//! | `same` | three-way, and equal changes on both sides merge to that value (idempotent flags) |
//! | none | three-way: if one side left it as `initial`, the other side's value; if both changed it, a conflict, even when both wrote the same value |
//!
//! A field with no rule conflicts when both sides changed it, because two
//! clients that both read `0` and wrote `1` made one update, not two: one of
//! them was lost. Use `same` only where writing a value twice means the
//! same as writing it once (a flag set to `true`, a "last seen" date).
//!
//! A field that serde does not store (`#[serde(skip)]`,
//! `skip_serializing`, `skip_deserializing`) takes no rule: the stored side
//! holds only its default, so the merge keeps this client's value.
//!
//! A bounded sum is how a stock or a balance stays within its limits under
//! concurrent commits: each transaction checks its own snapshot
//! (`stock >= qty`), and when two of them pass the check on the same
//! snapshot, the merged value falls out of bounds, the later commit
//! conflicts, and its retry sees the fresh value and refuses.
//!
//! A rule that does not fit a field's type is a compile error on the field.

pub use durus_derive::Merge;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash};

use super::per_key;

/// A merge that cannot be done: the commit fails with a conflict.
///
/// ```
/// use durus_core::MergeConflict;
///
/// let e = MergeConflict::new("balance", "would go below zero");
/// assert_eq!(e.to_string(), "cannot merge balance: would go below zero");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeConflict {
    /// The field (or type) that could not be merged, as a dotted path.
    pub field: String,
    /// Why, in words.
    pub reason: String,
}

impl MergeConflict {
    /// A conflict on `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> MergeConflict {
        MergeConflict {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn reason(reason: impl Into<String>) -> MergeConflict {
        MergeConflict::new("", reason)
    }
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot merge {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for MergeConflict {}

/// A value that merges field by field (derive it with `#[derive(Merge)]`).
///
/// ```
/// use durus_core::persistent::merge::Merge;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Merge, Serialize, Deserialize, Clone, PartialEq, Default)]
/// struct Stats {
///     #[merge(sum)]
///     visits: u32,
///     #[merge(max)]
///     best: u32,
/// }
///
/// let initial = Stats { visits: 10, best: 5 };
/// let ours = Stats { visits: 11, best: 7 };
/// let stored = Stats { visits: 12, best: 6 };
/// let merged = Stats::merge(&ours, &stored, &initial)?;
/// assert_eq!((merged.visits, merged.best), (13, 7));
/// # Ok::<(), durus_core::MergeConflict>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`#[merge(nested)]` and per-key `Nested` need a type that merges its own fields, and `{Self}` does not",
    label = "this field cannot be merged field by field",
    note = "add `#[derive(Merge)]` (from `durus_core::persistent::merge`) to `{Self}`"
)]
pub trait Merge: Sized {
    /// Merges `ours` and `stored`, both changed from `initial`.
    fn merge(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict>;
}

/// Numbers that `#[merge(sum)]` can add up.
///
/// ```
/// use durus_core::persistent::merge;
///
/// // Both sides added to 100: ours +5, theirs +20.
/// assert_eq!(merge::sum(&105i64, &120, &100)?, 125);
/// assert!(merge::sum(&u8::MAX, &10u8, &0).is_err()); // overflow
/// # Ok::<(), durus_core::MergeConflict>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`#[merge(sum)]` needs an integer or float field, and `{Self}` is not one",
    label = "this field cannot be summed",
    note = "use `#[merge(sum)]` on counters and balances; for other types try `max`, `min`, `ours` or `with = ...`"
)]
pub trait Summable: Sized + PartialOrd {
    /// `ours + (stored - initial)`, or `None` on overflow.
    fn merge_sum(ours: &Self, stored: &Self, initial: &Self) -> Option<Self>;
}

macro_rules! summable_int {
    ($($t:ty)*) => {$(
        impl Summable for $t {
            fn merge_sum(ours: &Self, stored: &Self, initial: &Self) -> Option<Self> {
                if stored >= initial {
                    ours.checked_add(stored.checked_sub(*initial)?)
                } else {
                    ours.checked_sub(initial.checked_sub(*stored)?)
                }
            }
        }
    )*};
}
summable_int!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize);

macro_rules! summable_float {
    ($($t:ty)*) => {$(
        impl Summable for $t {
            fn merge_sum(ours: &Self, stored: &Self, initial: &Self) -> Option<Self> {
                let merged = ours + (stored - initial);
                merged.is_finite().then_some(merged)
            }
        }
    )*};
}
summable_float!(f32 f64);

/// Sets and maps that `#[merge(union)]` can merge.
///
/// ```
/// use durus_core::persistent::merge;
/// use std::collections::BTreeSet;
///
/// let initial = BTreeSet::from([1, 2]);
/// let ours = BTreeSet::from([1, 2, 3]);
/// let stored = BTreeSet::from([2, 4]);
/// assert_eq!(merge::union(&ours, &stored, &initial)?, BTreeSet::from([2, 3, 4]));
/// # Ok::<(), durus_core::MergeConflict>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`#[merge(union)]` needs a set or a map field, and `{Self}` is neither",
    label = "this field cannot be merged as a union",
    note = "`union` works on BTreeSet, HashSet, BTreeMap, HashMap, PersistentSet and PersistentDict"
)]
/// A map's key changed on both sides is a conflict, even when both wrote
/// the same value (an update would be lost); `#[merge(per_key(...))]`
/// says how such a key merges instead.
pub trait Unionable: Sized {
    /// Applies both sides' additions and removals relative to `initial`.
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict>;
}

impl<T: Ord + Clone> Unionable for BTreeSet<T> {
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        let mut out = ours.clone();
        out.extend(stored.difference(initial).cloned());
        for gone in initial.difference(stored) {
            out.remove(gone);
        }
        Ok(out)
    }
}

impl<T: Eq + Hash + Clone, S: BuildHasher + Clone> Unionable for HashSet<T, S> {
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        let mut out = ours.clone();
        out.extend(stored.difference(initial).cloned());
        for gone in initial.difference(stored) {
            out.remove(gone);
        }
        Ok(out)
    }
}

impl<K: Ord + Clone, V: PartialEq + Clone> Unionable for BTreeMap<K, V> {
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        per_key::merge_map(ours, stored, initial, per_key::strict)
    }
}

impl<K: Eq + Hash + Clone, V: PartialEq + Clone, S: BuildHasher + Default> Unionable
    for HashMap<K, V, S>
{
    fn merge_union(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        per_key::merge_map(ours, stored, initial, per_key::strict)
    }
}

/// Values that keep a snapshot of their state (state0) for merging.
///
/// ```
/// use durus_core::persistent::merge::Snapshot;
///
/// let loaded = vec![1, 2, 3];
/// assert_eq!(loaded.snapshot_copy(), loaded);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has merge rules, so it must implement `Clone`",
    label = "add `#[derive(Clone)]` to this type",
    note = "a resolvable object keeps a copy of its state as loaded, to merge concurrent commits"
)]
pub trait Snapshot {
    /// The copy.
    fn snapshot_copy(&self) -> Self;
}

impl<T: Clone> Snapshot for T {
    fn snapshot_copy(&self) -> Self {
        self.clone()
    }
}

/// Fields merged by the three-way rule (no attribute) must compare and copy.
///
/// ```
/// use durus_core::persistent::merge;
///
/// // Only the other side changed the field: its value wins.
/// assert_eq!(merge::three_way(&"a", &"b", &"a")?, "b");
/// // Both changed it: a conflict, unless `same` and both agree.
/// assert!(merge::three_way(&1, &2, &0).is_err());
/// assert_eq!(merge::same(&2, &2, &0)?, 2);
/// # Ok::<(), durus_core::MergeConflict>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "a field without `#[merge(...)]` (or with `#[merge(same)]`) is merged three-way, so `{Self}` must implement `PartialEq` and `Clone`",
    label = "needs PartialEq + Clone, or a #[merge(...)] rule",
    note = "add the derives, or give the field a rule such as `#[merge(ours)]`"
)]
pub trait ThreeWay: Sized {
    /// The three-way merge.
    fn merge_three_way(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict>;

    /// The three-way merge where equal changes on both sides merge.
    fn merge_same(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict>;
}

impl<T: PartialEq + Clone> ThreeWay for T {
    fn merge_three_way(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        if ours == initial {
            Ok(stored.clone())
        } else if stored == initial {
            Ok(ours.clone())
        } else {
            Err(MergeConflict::reason(
                "changed on both sides (give the field a rule, such as `sum` or `same`, if both changes can stand)",
            ))
        }
    }

    fn merge_same(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        if ours == stored {
            Ok(stored.clone())
        } else {
            Self::merge_three_way(ours, stored, initial)
                .map_err(|_| MergeConflict::reason("changed differently on both sides"))
        }
    }
}

/// Fields merged by `max` or `min` must be ordered.
///
/// ```
/// use durus_core::persistent::merge;
///
/// assert_eq!(merge::max(&7, &9, &1)?, 9);
/// assert_eq!(merge::min(&7, &9, &1)?, 7);
/// # Ok::<(), durus_core::MergeConflict>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`#[merge(max)]` and `#[merge(min)]` need an ordered field, and `{Self}` is not `Ord + Clone`",
    label = "this field has no order"
)]
pub trait Ordered: Ord + Clone {}

impl<T: Ord + Clone> Ordered for T {}

/// The rule of a field with no attribute.
pub fn three_way<T: ThreeWay>(ours: &T, stored: &T, initial: &T) -> Result<T, MergeConflict> {
    T::merge_three_way(ours, stored, initial)
}

/// `#[merge(same)]`: three-way, where equal changes on both sides merge.
pub fn same<T: ThreeWay>(ours: &T, stored: &T, initial: &T) -> Result<T, MergeConflict> {
    T::merge_same(ours, stored, initial)
}

/// `#[merge(sum)]`.
pub fn sum<T: Summable>(ours: &T, stored: &T, initial: &T) -> Result<T, MergeConflict> {
    T::merge_sum(ours, stored, initial).ok_or_else(|| MergeConflict::reason("the sum overflows"))
}

/// `#[merge(sum(min = A, max = B))]`: a sum whose merged value must lie
/// within the bounds given; outside them the commit conflicts, so the later
/// transaction retries on fresh data (where its own check can refuse).
pub fn sum_within<T: Summable>(
    ours: &T,
    stored: &T,
    initial: &T,
    min: Option<T>,
    max: Option<T>,
) -> Result<T, MergeConflict> {
    let merged = sum(ours, stored, initial)?;
    if min.is_some_and(|min| merged < min) {
        return Err(MergeConflict::reason(
            "the merged sum is below the field's minimum",
        ));
    }
    if max.is_some_and(|max| merged > max) {
        return Err(MergeConflict::reason(
            "the merged sum is above the field's maximum",
        ));
    }
    Ok(merged)
}

/// `#[merge(union)]`.
pub fn union<T: Unionable>(ours: &T, stored: &T, initial: &T) -> Result<T, MergeConflict> {
    T::merge_union(ours, stored, initial)
}

/// `#[merge(ours)]`.
pub fn ours<T: Snapshot>(ours: &T, _stored: &T, _initial: &T) -> Result<T, MergeConflict> {
    Ok(ours.snapshot_copy())
}

/// `#[merge(theirs)]`.
pub fn theirs<T: Snapshot>(_ours: &T, stored: &T, _initial: &T) -> Result<T, MergeConflict> {
    Ok(stored.snapshot_copy())
}

/// `#[merge(max)]`.
pub fn max<T: Ordered>(ours: &T, stored: &T, _initial: &T) -> Result<T, MergeConflict> {
    Ok(ours.max(stored).clone())
}

/// `#[merge(min)]`.
pub fn min<T: Ordered>(ours: &T, stored: &T, _initial: &T) -> Result<T, MergeConflict> {
    Ok(ours.min(stored).clone())
}

/// `#[merge(nested)]`.
pub fn nested<T: Merge>(ours: &T, stored: &T, initial: &T) -> Result<T, MergeConflict> {
    T::merge(ours, stored, initial)
}

/// `#[merge(with = f)]`.
pub fn with<T, F>(f: F, ours: &T, stored: &T, initial: &T) -> Result<T, MergeConflict>
where
    F: FnOnce(&T, &T, &T) -> Result<T, MergeConflict>,
{
    f(ours, stored, initial)
}

/// Prefixes a conflict with the field it happened in.
pub fn in_field(field: &str, mut e: MergeConflict) -> MergeConflict {
    e.field = if e.field.is_empty() {
        field.to_string()
    } else {
        format!("{field}.{}", e.field)
    };
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_adds_the_other_sides_delta() {
        assert_eq!(sum(&15i64, &12, &10), Ok(17));
        assert!(sum(&5u32, &3, &10).is_err());
        assert_eq!(sum(&20u32, &3, &10), Ok(13));
        assert!(sum(&i64::MAX, &1, &0).is_err());
        assert!(sum(&f64::MAX, &f64::MAX, &0.0).is_err());
        assert_eq!(sum(&1.5f64, &2.0, &1.0), Ok(2.5));
    }

    #[test]
    fn union_applies_both_sides() {
        let i: BTreeSet<u8> = [1, 2, 3].into();
        let o: BTreeSet<u8> = [1, 2, 4].into(); // -3 +4
        let s: BTreeSet<u8> = [2, 3, 5].into(); // -1 +5
        assert_eq!(union(&o, &s, &i), Ok([2, 4, 5].into()));
        let i: BTreeMap<u8, u8> = [(1, 1), (2, 2)].into();
        let o: BTreeMap<u8, u8> = [(1, 10), (2, 2)].into();
        let s: BTreeMap<u8, u8> = [(1, 1), (3, 3)].into();
        assert_eq!(union(&o, &s, &i), Ok([(1, 10), (3, 3)].into()));
        let s2: BTreeMap<u8, u8> = [(1, 11), (2, 2)].into();
        assert!(union(&o, &s2, &i).is_err());
    }

    #[test]
    fn three_way_takes_the_changed_side() {
        assert_eq!(three_way(&1, &2, &1), Ok(2));
        assert_eq!(three_way(&2, &1, &1), Ok(2));
        assert_eq!(three_way(&1, &1, &1), Ok(1));
        // Both read 1 and wrote 3: one of the two updates was lost.
        assert!(three_way(&3, &3, &1).is_err());
        assert!(three_way(&2, &3, &1).is_err());
    }

    #[test]
    fn same_merges_equal_changes() {
        assert_eq!(same(&3, &3, &1), Ok(3));
        assert_eq!(same(&1, &2, &1), Ok(2));
        assert_eq!(same(&2, &1, &1), Ok(2));
        assert!(same(&2, &3, &1).is_err());
    }

    #[test]
    fn bounded_sums_conflict_out_of_bounds() {
        // stock 4; both sides took 3 from it.
        assert!(sum_within(&1i64, &1, &4, Some(0), None).is_err());
        assert_eq!(sum_within(&3i64, &2, &4, Some(0), None), Ok(1));
        assert!(sum_within(&8u32, &9, &5, None, Some(10)).is_err());
        assert_eq!(sum_within(&6u32, &7, &5, Some(0), Some(10)), Ok(8));
        assert_eq!(sum_within(&0.5f64, &0.5, &1.0, Some(0.0), None), Ok(0.0));
        assert!(sum_within(&0.5f64, &0.25, &1.0, Some(0.0), None).is_err());
    }
}
