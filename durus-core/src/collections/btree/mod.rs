//! [`BTree`]: an ordered map whose nodes are persistent objects of their own.
//!
//! # Layout
//!
//! A tree is three kinds of records:
//!
//! - one [`BTreeState`]: the reference to the root node and the number of
//!   entries (so [`BTree::len`] is O(1));
//! - [`BNode`]s: up to [`MAX_KEYS`] (31) entries each, sorted by key, and,
//!   in an interior node, one more child reference than entries. Every node
//!   but the root has at least [`MIN_KEYS`] (15) entries; all leaves are at
//!   the same depth. This is Durus's `BNode16` (minimum degree 16), so
//!   record counts compare with Durus's;
//! - the values, which are stored inline in the nodes (a value that is a
//!   `PRef` is a reference to a record of its own).
//!
//! A user holds a [`BTree`] handle: a cheap clone of the reference to the
//! state, which serializes as that reference, so a `BTree` can be a field of
//! any persistent struct (the tree keeps its own records). Its methods take
//! `&self`, load nodes as needed, mark changed exactly the nodes they change,
//! and return `Result` (a load can fail).
//!
//! The algorithms are Durus's (Cormen et al., chapter 18): an insert splits
//! each full node on its way down, so one insert writes the leaf it lands in,
//! plus, when a split happens, the split node, its new sibling and the parent
//! (and a new root and the state when the root splits), and the state when
//! the number of entries changes. A removal tops up each node on its way down
//! to at least 16 entries by borrowing from a sibling (through the parent) or
//! by joining two siblings.
//!
//! # Merging concurrent commits
//!
//! When another client committed some of the same records since this
//! transaction began, the commit merges record by record, or fails with a
//! conflict (abort and retry). The rules are:
//!
//! 1. A node or state this transaction only *read* and the other client
//!    changed is a conflict (the connection's rule for every object). Every
//!    operation reads the state and the nodes on its path, so a split or join
//!    by the other client anywhere on that path is a conflict.
//! 2. A **leaf** changed by both sides merges key by key, three-way against
//!    the leaf as this client loaded it: an entry added, changed or removed
//!    by one side only takes that side's result; an entry changed by both
//!    sides goes to the tree's [per-key rule](crate::per_key) `M`. It is a
//!    **conflict** when
//!    - the per-key rule refuses a key both sides changed (the default,
//!      `per_key::Strict`, always does, even when both wrote the same
//!      value: two read-modify-writes, one would be lost);
//!    - a key was added by both sides or removed by both sides, whatever the
//!      rule and even with the same value (the entry count in the state
//!      would count it twice);
//!    - the merged leaf would hold more than 31 entries (it would need a
//!      split);
//!    - the merged leaf would hold fewer than 15 entries and fewer than each
//!      side's version (it could need a join; the root leaf, which has no
//!      minimum, is treated the same way, so concurrent removals from a small
//!      root leaf conflict);
//!    - either version is not a leaf;
//!    - this transaction changed the leaf's key range (a split, a join, a
//!      borrow from a sibling, an entry taken up to replace a separator):
//!      a key the other side added could now belong to a sibling. The
//!      other side's range changes rewrite a parent this transaction read,
//!      a conflict by rule 1.
//! 3. An **interior node** changed by both sides is always a conflict (its
//!    children changed); it keeps no snapshot, so the conflict is found
//!    without loading anything.
//! 4. The **state** changed by both sides merges when both kept the same
//!    root node: the entry count becomes `ours + (stored - initial)`, so it
//!    stays exact. A root replaced on either side (a root split, or the tree
//!    getting shorter) is a conflict.
//!
//! So concurrent inserts, updates and removals of different keys commit
//! without conflict as long as no leaf on either side splits or joins (and
//! with `per_key::Sum`, concurrent increments of one key); even
//! a key read by `get` and changed by another client only conflicts through
//! rule 1 when this transaction also changed something.
//!
//! A tree is meant to be changed through its handle only; a change made
//! while an iterator over the same tree is alive gives that iterator
//! unspecified (but memory-safe) results.

// The files: node.rs the records and checked reads of a node; merge.rs
// rules 2 and 4 below; rebalance.rs splits, borrows and joins; handle.rs the
// `BTree` API and `verify`; iter.rs the `Range` iterator.
mod handle;
mod iter;
mod merge;
mod node;
mod rebalance;
#[cfg(test)]
mod tests;

pub use handle::BTree;
pub use iter::Range;
pub use node::{BNode, BTreeState};

use crate::persistent::PRef;

/// The minimum degree `t` of the tree (Durus's `BNode16`).
pub const MIN_DEGREE: usize = 16;
/// The most entries a node holds: `2t - 1`.
pub const MAX_KEYS: usize = 2 * MIN_DEGREE - 1;
/// The fewest entries a node other than the root holds: `t - 1`.
pub const MIN_KEYS: usize = MIN_DEGREE - 1;
/// Deeper than this, stored data must be corrupt (a cycle): with at least 16
/// children per interior node, 64 levels would be more entries than a u64
/// can count.
const MAX_DEPTH: usize = 64;

type NodeRef<K, V, M> = PRef<BNode<K, V, M>>;
