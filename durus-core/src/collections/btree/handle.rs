//! The handle a user holds: [`BTree`], its map API, and its invariant
//! check.

use super::node::{check_shape, child, corrupt, probe, size, too_deep, Probe};
use super::rebalance::{extreme, remove_in, split_child};
use super::{BNode, BTreeState, NodeRef, Range, MAX_DEPTH, MAX_KEYS, MIN_KEYS};
use crate::collections::{Key, Value};
use crate::error::Result;
use crate::persistent::per_key::{Rule, Strict};
use crate::persistent::PRef;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeBounds;

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
/// See the [module docs](super) for the layout and the merge rules.
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct BTree<K: Key, V: Value, M: Rule<V> = Strict> {
    state: PRef<BTreeState<K, V, M>>,
}

impl<K: Key, V: Value, M: Rule<V>> Clone for BTree<K, V, M> {
    fn clone(&self) -> Self {
        BTree {
            state: self.state.clone(),
        }
    }
}

impl<K: Key, V: Value, M: Rule<V>> PartialEq for BTree<K, V, M> {
    /// Two handles are equal when they are the same tree.
    fn eq(&self, other: &Self) -> bool {
        self.state.ptr_eq(&other.state)
    }
}

impl<K: Key, V: Value, M: Rule<V>> Eq for BTree<K, V, M> {}

impl<K: Key, V: Value, M: Rule<V>> Default for BTree<K, V, M> {
    fn default() -> Self {
        BTree {
            state: PRef::new(BTreeState::default()),
        }
    }
}

impl<K: Key, V: Value, M: Rule<V>> fmt::Debug for BTree<K, V, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BTree({:?})", self.state)
    }
}

impl<K: Key, V: Value, M: Rule<V>> From<PRef<BTreeState<K, V, M>>> for BTree<K, V, M> {
    fn from(state: PRef<BTreeState<K, V, M>>) -> Self {
        BTree { state }
    }
}

impl<K: Key, V: Value> BTree<K, V> {
    /// A new, empty tree. It is stored by the first commit that can reach it.
    ///
    /// A tree with another per-key rule is made with `default()` (as
    /// `HashMap::new` is only for the default hasher, so that `BTree::new()`
    /// needs no annotation).
    pub fn new() -> Self {
        BTree::default()
    }
}

impl<K: Key, V: Value, M: Rule<V>> BTree<K, V, M> {
    /// The reference to the tree's record.
    pub fn state(&self) -> &PRef<BTreeState<K, V, M>> {
        &self.state
    }

    pub(super) fn root(&self) -> Result<NodeRef<K, V, M>> {
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
                rule: PhantomData,
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
    pub fn iter(&self) -> Range<K, V, M> {
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
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Range<K, V, M> {
        Range::new(
            self.clone(),
            range.start_bound().cloned(),
            range.end_bound().cloned(),
        )
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

fn replace_value<K: Key, V: Value, M: Rule<V>>(
    node: &NodeRef<K, V, M>,
    i: usize,
    value: V,
) -> Result<Option<V>> {
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
    fn node<K: Key, V: Value, M: Rule<V>>(
        &mut self,
        node: &NodeRef<K, V, M>,
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
