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
//!    sides to the same value is fine. It is a **conflict** when
//!    - a key ends differently on the two sides (different values, or
//!      removed on one side and changed on the other);
//!    - a key was added by both sides or removed by both sides, even with the
//!      same value (the entry count in the state would count it twice);
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
//! without conflict as long as no leaf on either side splits or joins; even
//! a key read by `get` and changed by another client only conflicts through
//! rule 1 when this transaction also changed something.
//!
//! A tree is meant to be changed through its handle only; a change made
//! while an iterator over the same tree is alive gives that iterator
//! unspecified (but memory-safe) results.

use super::{Key, Value};
use crate::error::{EncodingError, Error, Result};
use crate::persistent::merge::{self, MergeConflict};
use crate::persistent::{PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, RangeBounds};

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

type NodeRef<K, V> = PRef<BNode<K, V>>;

/// One node of a [`BTree`]: a record of its own.
///
/// A leaf has no children; an interior node has one more child than entries,
/// and child `i` holds the keys between entries `i - 1` and `i`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BNode<K: Key, V: Value> {
    items: Vec<(K, V)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<NodeRef<K, V>>,
    /// Counts, in memory only, the times this node's key range changed
    /// (entries moved to or from a sibling or a parent). A leaf whose count
    /// moved since the transaction's snapshot is not merged key by key.
    #[serde(skip)]
    reshaped: u64,
}

impl<K: Key, V: Value> Persistent for BNode<K, V> {
    const CLASS_NAME: &'static str = "durus_core::collections::BNode";
    const RESOLVABLE: bool = true;

    /// Only leaves merge, so only leaves keep a snapshot.
    fn snapshot(&self) -> Option<Self> {
        self.is_leaf().then(|| self.clone())
    }

    fn resolve(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        merge_leaf(ours, stored, initial)
    }
}

impl<K: Key, V: Value> BNode<K, V> {
    fn leaf() -> Self {
        BNode {
            items: Vec::new(),
            nodes: Vec::new(),
            reshaped: 0,
        }
    }

    /// True when the node has no children.
    pub fn is_leaf(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The number of entries in this node (not its descendants).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the node holds no entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The entries of this node, in key order.
    pub fn items(&self) -> &[(K, V)] {
        &self.items
    }

    /// The children of this node (empty for a leaf).
    pub fn children(&self) -> &[PRef<BNode<K, V>>] {
        &self.nodes
    }

    fn search<Q: Ord + ?Sized>(&self, key: &Q) -> std::result::Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }
}

impl<K: Key + fmt::Debug, V: Value + fmt::Debug> fmt::Debug for BNode<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BNode")
            .field("items", &self.items)
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// Rule 2 of the module docs: the key-wise three-way merge of a leaf.
fn merge_leaf<K: Key, V: Value>(
    ours: &BNode<K, V>,
    stored: &BNode<K, V>,
    initial: &BNode<K, V>,
) -> Result<BNode<K, V>, MergeConflict> {
    let conflict = |reason: &str| MergeConflict::new(BNode::<K, V>::CLASS_NAME, reason);
    if !(ours.is_leaf() && stored.is_leaf() && initial.is_leaf()) {
        return Err(conflict("an interior node changed on both sides"));
    }
    if ours.reshaped != initial.reshaped {
        // This transaction moved the leaf's bounds (through a parent the
        // other side did not write): a key the other side added could now
        // belong to a sibling.
        return Err(conflict("the leaf's key range changed"));
    }
    let mut all: BTreeMap<&K, [Option<&V>; 3]> = BTreeMap::new();
    for (side, node) in [ours, stored, initial].into_iter().enumerate() {
        for (k, v) in &node.items {
            if let Some(slot) = all.entry(k).or_default().get_mut(side) {
                *slot = Some(v);
            }
        }
    }
    let mut items = Vec::with_capacity(all.len());
    for (k, [o, s, i]) in all {
        let merged = if o == i {
            s
        } else if s == i {
            o
        } else if o == s && o.is_some() == i.is_some() {
            // The same update of an entry present before and after.
            s
        } else if o == s {
            return Err(conflict("a key was added or removed by both sides"));
        } else {
            return Err(conflict("a key was changed differently on both sides"));
        };
        if let Some(v) = merged {
            items.push((k.clone(), v.clone()));
        }
    }
    if items.len() > MAX_KEYS {
        return Err(conflict("the merged leaf would need a split"));
    }
    if items.len() < MIN_KEYS && items.len() < ours.items.len().min(stored.items.len()) {
        return Err(conflict("the merged leaf could need a join"));
    }
    Ok(BNode {
        items,
        nodes: Vec::new(),
        reshaped: ours.reshaped,
    })
}

/// The record of a [`BTree`]: its root node and its number of entries.
///
/// Users hold a [`BTree`] handle rather than this type; it is public so that
/// a tree can be the root object (`conn.root::<BTreeState<K, V>>()`, then
/// [`BTree::from`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BTreeState<K: Key, V: Value> {
    root: NodeRef<K, V>,
    len: u64,
}

impl<K: Key, V: Value> Default for BTreeState<K, V> {
    fn default() -> Self {
        BTreeState {
            root: PRef::new(BNode::leaf()),
            len: 0,
        }
    }
}

impl<K: Key, V: Value> BTreeState<K, V> {
    /// The root node.
    pub fn root(&self) -> &PRef<BNode<K, V>> {
        &self.root
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the tree has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<K: Key, V: Value> Persistent for BTreeState<K, V> {
    const CLASS_NAME: &'static str = "durus_core::collections::BTree";
    const RESOLVABLE: bool = true;

    fn snapshot(&self) -> Option<Self> {
        Some(self.clone())
    }

    /// Rule 4 of the module docs.
    fn resolve(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        let same = |a: &NodeRef<K, V>, b: &NodeRef<K, V>| {
            a.ptr_eq(b) || (a.oid().is_some() && a.oid() == b.oid())
        };
        if !same(&ours.root, &initial.root) || !same(&stored.root, &initial.root) {
            return Err(MergeConflict::new(
                Self::CLASS_NAME,
                "the root node was replaced",
            ));
        }
        let len = merge::sum(&ours.len, &stored.len, &initial.len)
            .map_err(|e| merge::in_field("len", e))?;
        Ok(BTreeState {
            root: ours.root.clone(),
            len,
        })
    }
}

/// An ordered map from `K` to `V` whose nodes are persistent objects of
/// their own (Durus's `BTree` with `BNode16`).
///
/// The handle is cheap to clone; clones are the same tree. It serializes as
/// a reference to the tree's [`BTreeState`] record, so a `BTree` can be a
/// field of a persistent struct:
///
/// ```
/// use durus_core::{BTree, Connection, MemoryStorage, PRef, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Persistent, Serialize, Deserialize, Default)]
/// struct Root {
///     index: BTree<u64, String>,
/// }
///
/// let conn = Connection::new(MemoryStorage::new());
/// let root: PRef<Root> = conn.root()?;
/// let index = root.read()?.index.clone();
/// for i in 0..100 {
///     index.insert(i, format!("entry {i}"))?;
/// }
/// conn.commit()?;
/// assert_eq!(index.len()?, 100);
/// assert_eq!(index.get(&42)?.as_deref(), Some("entry 42"));
/// let keys: Vec<u64> = index.range(10..13).map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, [10, 11, 12]);
/// # Ok::<(), durus_core::Error>(())
/// ```
///
/// Values are returned as clones (use `PRef` values for large objects).
/// See the [module docs](self) for the layout and the merge rules.
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct BTree<K: Key, V: Value> {
    state: PRef<BTreeState<K, V>>,
}

impl<K: Key, V: Value> Clone for BTree<K, V> {
    fn clone(&self) -> Self {
        BTree {
            state: self.state.clone(),
        }
    }
}

impl<K: Key, V: Value> PartialEq for BTree<K, V> {
    /// Two handles are equal when they are the same tree.
    fn eq(&self, other: &Self) -> bool {
        self.state.ptr_eq(&other.state)
    }
}

impl<K: Key, V: Value> Eq for BTree<K, V> {}

impl<K: Key, V: Value> Default for BTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, V: Value> fmt::Debug for BTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BTree({:?})", self.state)
    }
}

impl<K: Key, V: Value> From<PRef<BTreeState<K, V>>> for BTree<K, V> {
    fn from(state: PRef<BTreeState<K, V>>) -> Self {
        BTree { state }
    }
}

/// An error for a node whose stored shape breaks the tree's invariants.
fn corrupt<K: Key, V: Value>(node: &NodeRef<K, V>, what: &str) -> Error {
    Error::Encoding(EncodingError::Decode {
        oid: node.oid().unwrap_or_default(),
        message: format!("btree node: {what}"),
    })
}

fn too_deep<K: Key, V: Value>(node: &NodeRef<K, V>) -> Error {
    corrupt(node, "the tree is deeper than 64 levels (a cycle?)")
}

/// What one node says about a key.
enum Probe<K: Key, V: Value> {
    /// The key is entry `i` of the node; `bool`: the node is a leaf.
    Found(usize, bool),
    /// The key is absent; it would go at `i` in this leaf.
    Absent(usize),
    /// The key can only be in child `i`.
    Down(usize, NodeRef<K, V>),
}

/// Looks `key` up in one node, checking the node's shape. The borrow ends
/// before the caller loads the child.
fn probe<K, V, Q>(node: &NodeRef<K, V>, key: &Q) -> Result<Probe<K, V>>
where
    K: Key + Borrow<Q>,
    V: Value,
    Q: Ord + ?Sized,
{
    let n = node.read()?;
    check_shape(node, &n)?;
    Ok(match n.search(key) {
        Ok(i) => Probe::Found(i, n.is_leaf()),
        Err(i) if n.is_leaf() => Probe::Absent(i),
        Err(i) => Probe::Down(i, child_of(node, &n, i)?),
    })
}

fn check_shape<K: Key, V: Value>(node: &NodeRef<K, V>, n: &BNode<K, V>) -> Result<()> {
    if n.is_leaf() || n.nodes.len() == n.items.len() + 1 {
        Ok(())
    } else {
        Err(corrupt(
            node,
            "the number of children does not match the entries",
        ))
    }
}

fn child_of<K: Key, V: Value>(
    node: &NodeRef<K, V>,
    n: &BNode<K, V>,
    i: usize,
) -> Result<NodeRef<K, V>> {
    n.nodes
        .get(i)
        .cloned()
        .ok_or_else(|| corrupt(node, "a child is missing"))
}

fn child<K: Key, V: Value>(node: &NodeRef<K, V>, i: usize) -> Result<NodeRef<K, V>> {
    child_of(node, &*node.read()?, i)
}

fn size<K: Key, V: Value>(node: &NodeRef<K, V>) -> Result<usize> {
    Ok(node.read()?.items.len())
}

/// Splits the full child `i` of `parent` (which is not full) around its
/// middle entry, which moves up into `parent`.
fn split_child<K: Key, V: Value>(parent: &NodeRef<K, V>, i: usize) -> Result<()> {
    let full = child(parent, i)?;
    let (middle, upper) = {
        let mut c = full.write()?;
        check_shape(&full, &c)?;
        if c.items.len() < MAX_KEYS {
            return Err(corrupt(&full, "split of a node that is not full"));
        }
        c.reshaped += 1;
        let upper_items = c.items.split_off(MIN_DEGREE);
        let middle = c
            .items
            .pop()
            .ok_or_else(|| corrupt(&full, "split of an empty node"))?;
        let upper_nodes = if c.is_leaf() {
            Vec::new()
        } else {
            c.nodes.split_off(MIN_DEGREE)
        };
        (
            middle,
            BNode {
                items: upper_items,
                nodes: upper_nodes,
                reshaped: 0,
            },
        )
    };
    let mut p = parent.write()?;
    if i > p.items.len() || i >= p.nodes.len() {
        return Err(corrupt(parent, "split of a child that is not there"));
    }
    p.items.insert(i, middle);
    p.nodes.insert(i + 1, PRef::new(upper));
    Ok(())
}

/// Moves the last entry of child `j` up into `parent` and the separator `j`
/// down to the front of child `j + 1` (Durus's case 3a, lower sibling).
fn shift_right<K: Key, V: Value>(parent: &NodeRef<K, V>, j: usize) -> Result<()> {
    let (lower, upper) = (child(parent, j)?, child(parent, j + 1)?);
    let (item, sub) = {
        let mut l = lower.write()?;
        l.reshaped += 1;
        let sub = if l.is_leaf() { None } else { l.nodes.pop() };
        let item = l
            .items
            .pop()
            .ok_or_else(|| corrupt(&lower, "empty sibling"))?;
        (item, sub)
    };
    let sep = replace_separator(parent, j, item)?;
    let mut u = upper.write()?;
    u.reshaped += 1;
    u.items.insert(0, sep);
    if let Some(sub) = sub {
        u.nodes.insert(0, sub);
    }
    Ok(())
}

/// Puts `item` in place of separator `j` of `parent`, returning the old one.
fn replace_separator<K: Key, V: Value>(
    parent: &NodeRef<K, V>,
    j: usize,
    item: (K, V),
) -> Result<(K, V)> {
    let mut p = parent.write()?;
    let slot = p
        .items
        .get_mut(j)
        .ok_or_else(|| corrupt(parent, "missing separator"))?;
    Ok(std::mem::replace(slot, item))
}

/// Moves the first entry of child `j + 1` up into `parent` and the
/// separator `j` down to the end of child `j` (Durus's case 3a, upper sibling).
fn shift_left<K: Key, V: Value>(parent: &NodeRef<K, V>, j: usize) -> Result<()> {
    let (lower, upper) = (child(parent, j)?, child(parent, j + 1)?);
    let (item, sub) = {
        let mut u = upper.write()?;
        if u.items.is_empty() || (!u.is_leaf() && u.nodes.len() < 2) {
            return Err(corrupt(&upper, "empty sibling"));
        }
        u.reshaped += 1;
        let sub = if u.is_leaf() {
            None
        } else {
            Some(u.nodes.remove(0))
        };
        (u.items.remove(0), sub)
    };
    let sep = replace_separator(parent, j, item)?;
    let mut l = lower.write()?;
    l.reshaped += 1;
    l.items.push(sep);
    if let Some(sub) = sub {
        l.nodes.push(sub);
    }
    Ok(())
}

/// Joins child `j + 1` and the separator `j` onto the end of child `j`
/// (Durus's cases 2c and 3b). The emptied child is left unchanged (it is no
/// longer reachable, so it is not rewritten).
fn join_children<K: Key, V: Value>(parent: &NodeRef<K, V>, j: usize) -> Result<NodeRef<K, V>> {
    let (sep, upper) = {
        let mut p = parent.write()?;
        if j >= p.items.len() || j + 1 >= p.nodes.len() {
            return Err(corrupt(parent, "join of children that are not there"));
        }
        (p.items.remove(j), p.nodes.remove(j + 1))
    };
    let lower = child(parent, j)?;
    let (items, nodes) = {
        let u = upper.read()?;
        (u.items.clone(), u.nodes.clone())
    };
    let mut l = lower.write()?;
    if l.is_leaf() != nodes.is_empty() {
        return Err(corrupt(&lower, "join of a leaf and an interior node"));
    }
    l.reshaped += 1;
    l.items.push(sep);
    l.items.extend(items);
    l.nodes.extend(nodes);
    drop(l);
    Ok(lower)
}

/// The first (`last == false`) or last entry under `node`.
fn extreme<K: Key, V: Value>(node: &NodeRef<K, V>, last: bool) -> Result<Option<(K, V)>> {
    let mut node = node.clone();
    for _ in 0..MAX_DEPTH {
        let next = {
            let n = node.read()?;
            check_shape(&node, &n)?;
            if n.is_leaf() {
                let item = if last {
                    n.items.last()
                } else {
                    n.items.first()
                };
                return Ok(item.cloned());
            }
            let next = if last {
                n.nodes.last()
            } else {
                n.nodes.first()
            };
            next.cloned()
                .ok_or_else(|| corrupt(&node, "a child is missing"))?
        };
        node = next;
    }
    Err(too_deep(&node))
}

/// Removes `key` from the subtree under `node`, which has at least
/// `MIN_DEGREE` entries unless it is the root (Durus's `BNode.delete`).
/// `moves_up`: the entry is taken to replace a separator above, so the
/// leaf it leaves changes its key range.
fn remove_in<K, V, Q>(
    node: &NodeRef<K, V>,
    key: &Q,
    depth: usize,
    moves_up: bool,
) -> Result<Option<(K, V)>>
where
    K: Key + Borrow<Q>,
    V: Value,
    Q: Ord + ?Sized,
{
    if depth > MAX_DEPTH {
        return Err(too_deep(node));
    }
    match probe(node, key)? {
        Probe::Absent(_) => Ok(None),
        Probe::Found(i, true) => {
            let mut n = node.write()?;
            if moves_up {
                n.reshaped += 1;
            }
            Ok((i < n.items.len()).then(|| n.items.remove(i)))
        }
        Probe::Found(i, false) => {
            let (lower, upper) = (child(node, i)?, child(node, i + 1)?);
            let replacement = if size(&lower)? >= MIN_DEGREE {
                Some((&lower, true))
            } else if size(&upper)? >= MIN_DEGREE {
                Some((&upper, false))
            } else {
                None
            };
            match replacement {
                Some((side, last)) => {
                    // Case 2a/2b: the predecessor (or successor) takes its place.
                    let (k, _) =
                        extreme(side, last)?.ok_or_else(|| corrupt(side, "empty child"))?;
                    let item = remove_in::<K, V, K>(side, &k, depth + 1, true)?
                        .ok_or_else(|| corrupt(side, "an entry vanished"))?;
                    let mut n = node.write()?;
                    let slot = n
                        .items
                        .get_mut(i)
                        .ok_or_else(|| corrupt(node, "missing entry"))?;
                    Ok(Some(std::mem::replace(slot, item)))
                }
                None => {
                    // Case 2c: join both children around the key, then remove it there.
                    let joined = join_children(node, i)?;
                    remove_in(&joined, key, depth + 1, moves_up)
                }
            }
        }
        Probe::Down(i, down) => {
            let down = if size(&down)? < MIN_DEGREE {
                top_up(node, i)?
            } else {
                down
            };
            remove_in(&down, key, depth + 1, moves_up)
        }
    }
}

/// Case 3: gives child `i` of `node` at least `MIN_DEGREE` entries before
/// descending into it; returns the node to descend into.
fn top_up<K: Key, V: Value>(node: &NodeRef<K, V>, i: usize) -> Result<NodeRef<K, V>> {
    let (lower, upper) = {
        let n = node.read()?;
        let lower = i.checked_sub(1).and_then(|j| n.nodes.get(j).cloned());
        (lower, n.nodes.get(i + 1).cloned())
    };
    if let Some(lower) = &lower {
        if size(lower)? >= MIN_DEGREE {
            shift_right(node, i - 1)?;
            return child(node, i);
        }
    }
    if let Some(upper) = &upper {
        if size(upper)? >= MIN_DEGREE {
            shift_left(node, i)?;
            return child(node, i);
        }
    }
    match (lower, upper) {
        (Some(_), _) => join_children(node, i - 1),
        (None, Some(_)) => join_children(node, i),
        (None, None) => Err(corrupt(node, "an interior node with one child")),
    }
}

impl<K: Key, V: Value> BTree<K, V> {
    /// A new, empty tree. It is stored by the first commit that can reach it.
    pub fn new() -> Self {
        BTree {
            state: PRef::new(BTreeState::default()),
        }
    }

    /// The reference to the tree's record.
    pub fn state(&self) -> &PRef<BTreeState<K, V>> {
        &self.state
    }

    fn root(&self) -> Result<NodeRef<K, V>> {
        Ok(self.state.read()?.root.clone())
    }

    /// The number of entries, kept in the tree's record: O(1).
    pub fn len(&self) -> Result<u64> {
        Ok(self.state.read()?.len)
    }

    /// True when the tree has no entry.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The value for `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.get_entry(key).map(|e| e.map(|(_, v)| v))
    }

    /// The stored key and the value for `key`.
    pub fn get_entry<Q: Ord + ?Sized>(&self, key: &Q) -> Result<Option<(K, V)>>
    where
        K: Borrow<Q>,
    {
        let mut node = self.root()?;
        for _ in 0..MAX_DEPTH {
            match probe(&node, key)? {
                Probe::Found(i, _) => return Ok(node.read()?.items.get(i).cloned()),
                Probe::Absent(_) => return Ok(None),
                Probe::Down(_, down) => node = down,
            }
        }
        Err(too_deep(&node))
    }

    /// True when `key` has a value.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
        Ok(self.get_entry(key)?.is_some())
    }

    /// Sets the value for `key`, returning the previous one.
    ///
    /// Writes the leaf (or the interior node) holding the key; a new key
    /// also writes the tree's record (its count), and each split on the way
    /// down writes the split node, its new sibling and their parent.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let mut node = self.root()?;
        if size(&node)? >= MAX_KEYS {
            let new_root = PRef::new(BNode {
                items: Vec::new(),
                nodes: vec![node],
                reshaped: 0,
            });
            split_child(&new_root, 0)?;
            self.state.write()?.root = new_root.clone();
            node = new_root;
        }
        for _ in 0..MAX_DEPTH {
            let mut down = match probe(&node, &key)? {
                Probe::Found(i, _) => return replace_value(&node, i, value),
                Probe::Absent(i) => {
                    node.write()?.items.insert(i, (key, value));
                    let mut state = self.state.write()?;
                    state.len = state.len.saturating_add(1);
                    return Ok(None);
                }
                Probe::Down(i, down) => (i, down),
            };
            if size(&down.1)? >= MAX_KEYS {
                split_child(&node, down.0)?;
                let order = {
                    let n = node.read()?;
                    let (sep, _) = n
                        .items
                        .get(down.0)
                        .ok_or_else(|| corrupt(&node, "missing separator"))?;
                    key.cmp(sep)
                };
                match order {
                    Ordering::Equal => return replace_value(&node, down.0, value),
                    Ordering::Greater => down = (down.0 + 1, child(&node, down.0 + 1)?),
                    Ordering::Less => {}
                }
            }
            node = down.1;
        }
        Err(too_deep(&node))
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q: Ord + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        let root = self.root()?;
        let removed = remove_in(&root, key, 0, false)?;
        let new_root = {
            let r = root.read()?;
            if r.items.is_empty() && !r.is_leaf() {
                r.nodes.first().cloned()
            } else {
                None
            }
        };
        if new_root.is_some() || removed.is_some() {
            let mut state = self.state.write()?;
            if let Some(new_root) = new_root {
                state.root = new_root;
            }
            if removed.is_some() {
                state.len = state.len.saturating_sub(1);
            }
        }
        Ok(removed.map(|(_, v)| v))
    }

    /// Inserts every entry of `entries`, in order.
    pub fn extend(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        for (k, v) in entries {
            self.insert(k, v)?;
        }
        Ok(())
    }

    /// Removes and returns the entry with the smallest key.
    pub fn pop_first(&self) -> Result<Option<(K, V)>> {
        self.pop(false)
    }

    /// Removes and returns the entry with the largest key.
    pub fn pop_last(&self) -> Result<Option<(K, V)>> {
        self.pop(true)
    }

    fn pop(&self, last: bool) -> Result<Option<(K, V)>> {
        let Some((k, _)) = extreme(&self.root()?, last)? else {
            return Ok(None);
        };
        Ok(self.remove(&k)?.map(|v| (k, v)))
    }

    /// Removes every entry (the tree gets a new, empty root).
    pub fn clear(&self) -> Result<()> {
        let mut state = self.state.write()?;
        state.root = PRef::new(BNode::leaf());
        state.len = 0;
        Ok(())
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Result<Option<(K, V)>> {
        extreme(&self.root()?, false)
    }

    /// The entry with the largest key.
    pub fn last(&self) -> Result<Option<(K, V)>> {
        extreme(&self.root()?, true)
    }

    /// Every entry in key order (reverse it with `.rev()`); nodes load as
    /// the iteration reaches them.
    pub fn iter(&self) -> Range<K, V> {
        self.range(..)
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = Result<K>> {
        self.iter().map(|e| e.map(|(k, _)| k))
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = Result<V>> {
        self.iter().map(|e| e.map(|(_, v)| v))
    }

    /// The entries whose keys are in `range`, in order; `.rev()` (or
    /// `next_back`) walks from the upper end. Nodes load lazily: taking the
    /// first entries of a huge range loads only the nodes on one path.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Range<K, V> {
        Range {
            tree: self.clone(),
            lower: range.start_bound().cloned(),
            upper: range.end_bound().cloned(),
            front: None,
            back: None,
            done: false,
        }
    }

    /// The number of levels: 1 for a tree that is one leaf.
    pub fn depth(&self) -> Result<usize> {
        let mut node = self.root()?;
        for depth in 1..=MAX_DEPTH {
            let next = {
                let n = node.read()?;
                match n.nodes.first() {
                    None => return Ok(depth),
                    Some(first) => first.clone(),
                }
            };
            node = next;
        }
        Err(too_deep(&node))
    }

    /// Checks every invariant, loading every node: keys strictly increasing
    /// (within each child's range), node sizes, children counts, all leaves
    /// at one depth, and the entry count in the tree's record. Returns the
    /// number of nodes.
    pub fn verify(&self) -> Result<u64> {
        let root = self.root()?;
        let mut walk = Walk {
            leaf_depth: None,
            entries: 0,
            nodes: 0,
        };
        walk.node(&root, 0, None, None)?;
        let len = self.len()?;
        if walk.entries != len {
            return Err(corrupt(
                &root,
                &format!("the tree counts {len} entries but holds {}", walk.entries),
            ));
        }
        Ok(walk.nodes)
    }
}

fn replace_value<K: Key, V: Value>(node: &NodeRef<K, V>, i: usize, value: V) -> Result<Option<V>> {
    let mut n = node.write()?;
    let slot = n
        .items
        .get_mut(i)
        .ok_or_else(|| corrupt(node, "missing entry"))?;
    Ok(Some(std::mem::replace(&mut slot.1, value)))
}

/// State of [`BTree::verify`].
struct Walk {
    leaf_depth: Option<usize>,
    entries: u64,
    nodes: u64,
}

impl Walk {
    fn node<K: Key, V: Value>(
        &mut self,
        node: &NodeRef<K, V>,
        depth: usize,
        low: Option<&K>,
        high: Option<&K>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(too_deep(node));
        }
        let (items, nodes) = {
            let n = node.read()?;
            check_shape(node, &n)?;
            (n.items.clone(), n.nodes.clone())
        };
        self.nodes += 1;
        self.entries += items.len() as u64;
        if items.len() > MAX_KEYS || (depth > 0 && items.len() < MIN_KEYS) {
            return Err(corrupt(node, &format!("{} entries", items.len())));
        }
        if depth == 0 && !nodes.is_empty() && items.is_empty() {
            return Err(corrupt(node, "an empty interior root"));
        }
        let keys: Vec<&K> = low
            .into_iter()
            .chain(items.iter().map(|(k, _)| k))
            .chain(high)
            .collect();
        if keys.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(corrupt(node, "keys out of order"));
        }
        if nodes.is_empty() {
            match self.leaf_depth {
                None => self.leaf_depth = Some(depth),
                Some(d) if d != depth => return Err(corrupt(node, "leaves at different depths")),
                Some(_) => {}
            }
            return Ok(());
        }
        for (i, sub) in nodes.iter().enumerate() {
            let lo = i
                .checked_sub(1)
                .and_then(|j| items.get(j))
                .map(|(k, _)| k)
                .or(low);
            let hi = items.get(i).map(|(k, _)| k).or(high);
            self.node(sub, depth + 1, lo, hi)?;
        }
        Ok(())
    }
}

/// One node on an iterator's path and the next position to yield from it.
struct Frame<K: Key, V: Value> {
    node: NodeRef<K, V>,
    /// Forward: the index of the next entry. Backward: one past it.
    pos: usize,
}

/// A path through the tree for one end of a [`Range`].
struct Cursor<K: Key, V: Value> {
    stack: Vec<Frame<K, V>>,
    /// A subtree to enter before the next step (entered lazily, so a step
    /// loads nothing beyond what it yields).
    pending: Option<NodeRef<K, V>>,
}

/// A lazy iterator over a range of a [`BTree`], from either end.
///
/// Yields `Result<(K, V)>`: a node that fails to load ends the iteration
/// with that error. It holds no borrow between steps.
pub struct Range<K: Key, V: Value> {
    tree: BTree<K, V>,
    /// Moves up as the front yields.
    lower: Bound<K>,
    /// Moves down as the back yields.
    upper: Bound<K>,
    front: Option<Cursor<K, V>>,
    back: Option<Cursor<K, V>>,
    done: bool,
}

fn above<K: Ord>(key: &K, lower: &Bound<K>) -> bool {
    match lower {
        Bound::Included(b) => key >= b,
        Bound::Excluded(b) => key > b,
        Bound::Unbounded => true,
    }
}

fn below<K: Ord>(key: &K, upper: &Bound<K>) -> bool {
    match upper {
        Bound::Included(b) => key <= b,
        Bound::Excluded(b) => key < b,
        Bound::Unbounded => true,
    }
}

impl<K: Key, V: Value> Cursor<K, V> {
    /// The path to the first entry at or after `bound` (forward), or to the
    /// last entry at or before it (backward).
    fn seek(root: NodeRef<K, V>, bound: &Bound<K>, forward: bool) -> Result<Cursor<K, V>> {
        let mut stack = Vec::new();
        let mut node = root;
        for _ in 0..MAX_DEPTH {
            let (pos, down) = {
                let n = node.read()?;
                check_shape(&node, &n)?;
                let (pos, exact) = match (bound, forward) {
                    (Bound::Unbounded, true) => (0, false),
                    (Bound::Unbounded, false) => (n.items.len(), false),
                    (Bound::Included(k) | Bound::Excluded(k), _) => match n.search(k) {
                        Ok(i) => {
                            let included = matches!(bound, Bound::Included(_));
                            match (forward, included) {
                                (true, true) => (i, true),
                                (false, true) => (i + 1, true),
                                (true, false) => (i + 1, false),
                                (false, false) => (i, false),
                            }
                        }
                        Err(i) => (i, false),
                    },
                };
                // An exact hit is the next entry itself: no need to go down.
                let down = if n.is_leaf() || exact {
                    None
                } else {
                    Some(child_of(&node, &n, pos)?)
                };
                (pos, down)
            };
            stack.push(Frame { node, pos });
            match down {
                Some(down) => node = down,
                None => {
                    return Ok(Cursor {
                        stack,
                        pending: None,
                    })
                }
            }
        }
        Err(too_deep(&node))
    }

    /// Enters the pending subtree along its leftmost (forward) or rightmost path.
    fn enter(&mut self, forward: bool) -> Result<()> {
        let Some(mut node) = self.pending.take() else {
            return Ok(());
        };
        if self.stack.len() > MAX_DEPTH {
            return Err(too_deep(&node));
        }
        for _ in 0..MAX_DEPTH {
            let (pos, down) = {
                let n = node.read()?;
                check_shape(&node, &n)?;
                let pos = if forward { 0 } else { n.items.len() };
                let down = if n.is_leaf() {
                    None
                } else {
                    Some(child_of(&node, &n, pos)?)
                };
                (pos, down)
            };
            self.stack.push(Frame { node, pos });
            match down {
                Some(down) => node = down,
                None => return Ok(()),
            }
        }
        Err(too_deep(&node))
    }

    /// The next entry in this cursor's direction, or `None` at the end.
    fn step(&mut self, forward: bool) -> Result<Option<(K, V)>> {
        self.enter(forward)?;
        for _ in 0..=(MAX_DEPTH + 1) {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let found = {
                let n = frame.node.read()?;
                let index = if forward {
                    Some(frame.pos)
                } else {
                    frame.pos.checked_sub(1)
                };
                match index.and_then(|i| n.items.get(i).map(|item| (i, item))) {
                    None => None,
                    Some((i, item)) => {
                        let next_child = if forward { i + 1 } else { i };
                        let down = if n.is_leaf() {
                            None
                        } else {
                            Some(child_of(&frame.node, &n, next_child)?)
                        };
                        Some((item.clone(), if forward { i + 1 } else { i }, down))
                    }
                }
            };
            match found {
                None => {
                    self.stack.pop();
                }
                Some((item, pos, down)) => {
                    frame.pos = pos;
                    self.pending = down;
                    return Ok(Some(item));
                }
            }
        }
        Err(Error::Encoding(EncodingError::Decode {
            oid: Default::default(),
            message: "btree iterator: the path is deeper than 64 levels".into(),
        }))
    }
}

impl<K: Key, V: Value> Range<K, V> {
    fn next_from(&mut self, forward: bool) -> Option<Result<(K, V)>> {
        if self.done {
            return None;
        }
        let out = self.try_next(forward);
        match out {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn try_next(&mut self, forward: bool) -> Result<Option<(K, V)>> {
        let slot = if forward {
            &mut self.front
        } else {
            &mut self.back
        };
        if slot.is_none() {
            let root = self.tree.root()?;
            let bound = if forward { &self.lower } else { &self.upper };
            *slot = Some(Cursor::seek(root, bound, forward)?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Ok(None);
        };
        let Some((k, v)) = cursor.step(forward)? else {
            return Ok(None);
        };
        let inside = if forward {
            below(&k, &self.upper)
        } else {
            above(&k, &self.lower)
        };
        if !inside {
            return Ok(None);
        }
        if forward {
            self.lower = Bound::Excluded(k.clone());
        } else {
            self.upper = Bound::Excluded(k.clone());
        }
        Ok(Some((k, v)))
    }
}

impl<K: Key, V: Value> Iterator for Range<K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_from(true)
    }
}

impl<K: Key, V: Value> DoubleEndedIterator for Range<K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_from(false)
    }
}

impl<K: Key, V: Value> std::iter::FusedIterator for Range<K, V> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(keys: &[u32]) -> BNode<u32, u32> {
        BNode {
            items: keys.iter().map(|k| (*k, *k)).collect(),
            nodes: Vec::new(),
            reshaped: 0,
        }
    }

    fn with(node: &BNode<u32, u32>, k: u32, v: u32) -> BNode<u32, u32> {
        let mut n = node.clone();
        match n.search(&k) {
            Ok(i) => n.items[i].1 = v,
            Err(i) => n.items.insert(i, (k, v)),
        }
        n
    }

    fn without(node: &BNode<u32, u32>, k: u32) -> BNode<u32, u32> {
        let mut n = node.clone();
        n.items.retain(|(key, _)| *key != k);
        n
    }

    fn keys(node: &BNode<u32, u32>) -> Vec<(u32, u32)> {
        node.items.clone()
    }

    #[test]
    fn leaves_merge_key_by_key() {
        let initial = leaf(&(0..20).map(|k| k * 10).collect::<Vec<_>>());
        let ours = without(&with(&initial, 5, 5), 30);
        let stored = with(&with(&initial, 7, 7), 40, 41);
        let merged = merge_leaf(&ours, &stored, &initial).unwrap();
        let mut expect = without(&initial, 30);
        expect = with(&with(&with(&expect, 5, 5), 7, 7), 40, 41);
        assert_eq!(keys(&merged), keys(&expect));
        // The same update on both sides is fine.
        let both = with(&initial, 50, 1);
        assert!(merge_leaf(&both, &both, &initial).is_ok());
    }

    #[test]
    fn leaf_conflicts() {
        let initial = leaf(&(0..20).map(|k| k * 10).collect::<Vec<_>>());
        // The same key changed differently.
        assert!(merge_leaf(&with(&initial, 10, 1), &with(&initial, 10, 2), &initial).is_err());
        assert!(merge_leaf(&with(&initial, 10, 1), &without(&initial, 10), &initial).is_err());
        // The same key added (or removed) by both sides: the count would be wrong.
        assert!(merge_leaf(&with(&initial, 5, 5), &with(&initial, 5, 5), &initial).is_err());
        assert!(merge_leaf(&without(&initial, 10), &without(&initial, 10), &initial).is_err());
        // Over-full.
        let mut ours = initial.clone();
        let mut stored = initial.clone();
        for k in 0..6 {
            ours = with(&ours, k * 10 + 1, 0);
            stored = with(&stored, k * 10 + 2, 0);
        }
        assert_eq!((ours.len(), stored.len()), (26, 26));
        assert!(merge_leaf(&ours, &stored, &initial).is_err());
        // Under-full.
        let initial = leaf(&(0..16).collect::<Vec<_>>());
        assert!(merge_leaf(&without(&initial, 1), &without(&initial, 2), &initial).is_err());
        // A small root leaf takes concurrent inserts.
        let initial = leaf(&[1, 2]);
        assert!(merge_leaf(&with(&initial, 3, 3), &with(&initial, 4, 4), &initial).is_ok());
        // Interior nodes never merge.
        let mut interior = leaf(&[1]);
        interior.nodes = vec![PRef::new(leaf(&[0])), PRef::new(leaf(&[2]))];
        assert!(interior.snapshot().is_none());
        assert!(merge_leaf(&interior, &interior, &interior).is_err());
    }

    #[test]
    fn a_tree_in_memory() -> Result<()> {
        let tree: BTree<u32, u32> = BTree::new();
        for k in (0..2000).rev() {
            assert_eq!(tree.insert(k * 2, k)?, None);
        }
        assert_eq!(tree.len()?, 2000);
        assert_eq!(tree.depth()?, 3);
        tree.verify()?;
        assert_eq!(tree.get(&10)?, Some(5));
        assert_eq!(tree.get(&11)?, None);
        assert_eq!(tree.insert(10, 50)?, Some(5));
        let got: Vec<u32> = tree
            .range(7..=13)
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_>>()?;
        assert_eq!(got, [8, 10, 12]);
        let got: Vec<u32> = tree
            .range(..5)
            .rev()
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_>>()?;
        assert_eq!(got, [4, 2, 0]);
        for k in 0..1990 {
            assert!(tree.remove(&(k * 2))?.is_some(), "{k}");
            assert_eq!(tree.remove(&(k * 2))?, None);
        }
        tree.verify()?;
        assert_eq!(tree.len()?, 10);
        assert_eq!(tree.depth()?, 1);
        assert_eq!(tree.first()?, Some((3980, 1990)));
        assert_eq!(tree.last()?, Some((3998, 1999)));
        assert_eq!(tree.pop_first()?, Some((3980, 1990)));
        assert_eq!(tree.pop_last()?, Some((3998, 1999)));
        tree.extend((0..100).map(|k| (k, k)))?;
        assert_eq!(tree.len()?, 108);
        tree.verify()?;
        tree.clear()?;
        assert_eq!((tree.len()?, tree.pop_first()?), (0, None));
        Ok(())
    }

    #[test]
    fn both_ends_meet() -> Result<()> {
        let tree: BTree<u32, ()> = BTree::new();
        for k in 0..500 {
            tree.insert(k, ())?;
        }
        let mut it = tree.iter();
        let mut seen = Vec::new();
        for i in 0..600 {
            let next = if i % 3 == 0 {
                it.next_back()
            } else {
                it.next()
            };
            match next {
                Some(e) => seen.push(e?.0),
                None => break,
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
        Ok(())
    }
}
