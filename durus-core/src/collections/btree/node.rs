//! The tree's records: [`BNode`] and [`BTreeState`], their `Persistent`
//! impls (class names pinned: they are what the file stores), and reading a
//! node with its shape checked.

use super::merge::{merge_leaf, merge_state};
#[cfg(doc)]
use super::BTree;
use super::NodeRef;
use crate::collections::{Key, Value};
use crate::error::{EncodingError, Error, Result};
use crate::persistent::merge::MergeConflict;
use crate::persistent::per_key::{Rule, Strict};
use crate::persistent::{PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

/// One node of a [`BTree`]: a record of its own.
///
/// A leaf has no children; an interior node has one more child than entries,
/// and child `i` holds the keys between entries `i - 1` and `i`.
///
/// ```
/// use durus_core::BTree;
///
/// let tree: BTree<u32, u32> = BTree::new();
/// tree.insert(1, 10)?;
/// let root = tree.state().read()?.root().clone();
/// let node = root.read()?;
/// assert!(node.is_leaf());
/// assert_eq!(node.items(), &[(1, 10)]);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BNode<K: Key, V: Value, M: Rule<V> = Strict> {
    pub(super) items: Vec<(K, V)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) nodes: Vec<NodeRef<K, V, M>>,
    /// Counts, in memory only, the times this node's key range changed
    /// (entries moved to or from a sibling or a parent). A leaf whose count
    /// moved since the transaction's snapshot is not merged key by key.
    #[serde(skip)]
    pub(super) reshaped: u64,
    /// The tree's rule for a key both sides changed (not stored).
    #[serde(skip)]
    pub(super) rule: PhantomData<M>,
}

impl<K: Key, V: Value, M: Rule<V>> Persistent for BNode<K, V, M> {
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

impl<K: Key, V: Value, M: Rule<V>> BNode<K, V, M> {
    pub(super) fn leaf() -> Self {
        BNode {
            items: Vec::new(),
            nodes: Vec::new(),
            reshaped: 0,
            rule: PhantomData,
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
    pub fn children(&self) -> &[PRef<BNode<K, V, M>>] {
        &self.nodes
    }

    pub(super) fn search<Q: Ord + ?Sized>(&self, key: &Q) -> std::result::Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }
}

impl<K: Key + fmt::Debug, V: Value + fmt::Debug, M: Rule<V>> fmt::Debug for BNode<K, V, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BNode")
            .field("items", &self.items)
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// The record of a [`BTree`]: its root node and its number of entries.
///
/// Users hold a [`BTree`] handle rather than this type; it is public so that
/// a tree can be the root object (`conn.root::<BTreeState<K, V, M>>()`, then
/// [`BTree::from`]).
///
/// ```
/// use durus_core::collections::BTreeState;
/// use durus_core::{BTree, Connection, MemoryStorage, PRef};
///
/// let conn = Connection::new(MemoryStorage::new());
/// let state: PRef<BTreeState<String, u64>> = conn.root()?;
/// let tree = BTree::from(state.clone());
/// tree.insert("apples".into(), 3)?;
/// conn.commit()?;
/// assert_eq!(state.read()?.len(), 1);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BTreeState<K: Key, V: Value, M: Rule<V> = Strict> {
    pub(super) root: NodeRef<K, V, M>,
    pub(super) len: u64,
}

impl<K: Key, V: Value, M: Rule<V>> Default for BTreeState<K, V, M> {
    fn default() -> Self {
        BTreeState {
            root: PRef::new(BNode::leaf()),
            len: 0,
        }
    }
}

impl<K: Key, V: Value, M: Rule<V>> BTreeState<K, V, M> {
    /// The root node.
    pub fn root(&self) -> &PRef<BNode<K, V, M>> {
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

impl<K: Key, V: Value, M: Rule<V>> Persistent for BTreeState<K, V, M> {
    const CLASS_NAME: &'static str = "durus_core::collections::BTree";
    const RESOLVABLE: bool = true;

    fn snapshot(&self) -> Option<Self> {
        Some(self.clone())
    }

    /// Rule 4 of the module docs.
    fn resolve(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict> {
        merge_state(ours, stored, initial)
    }
}

// Reading nodes, checking their shape on the way.

/// An error for a node whose stored shape breaks the tree's invariants.
pub(super) fn corrupt<K: Key, V: Value, M: Rule<V>>(node: &NodeRef<K, V, M>, what: &str) -> Error {
    Error::Encoding(EncodingError::Decode {
        oid: node.oid().unwrap_or_default(),
        message: format!("btree node: {what}"),
    })
}

pub(super) fn too_deep<K: Key, V: Value, M: Rule<V>>(node: &NodeRef<K, V, M>) -> Error {
    corrupt(node, "the tree is deeper than 64 levels (a cycle?)")
}

/// What one node says about a key.
pub(super) enum Probe<K: Key, V: Value, M: Rule<V>> {
    /// The key is entry `i` of the node; `bool`: the node is a leaf.
    Found(usize, bool),
    /// The key is absent; it would go at `i` in this leaf.
    Absent(usize),
    /// The key can only be in child `i`.
    Down(usize, NodeRef<K, V, M>),
}

/// Looks `key` up in one node, checking the node's shape. The borrow ends
/// before the caller loads the child.
pub(super) fn probe<K, V, M, Q>(node: &NodeRef<K, V, M>, key: &Q) -> Result<Probe<K, V, M>>
where
    K: Key + Borrow<Q>,
    V: Value,
    M: Rule<V>,
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

pub(super) fn check_shape<K: Key, V: Value, M: Rule<V>>(
    node: &NodeRef<K, V, M>,
    n: &BNode<K, V, M>,
) -> Result<()> {
    if n.is_leaf() || n.nodes.len() == n.items.len() + 1 {
        Ok(())
    } else {
        Err(corrupt(
            node,
            "the number of children does not match the entries",
        ))
    }
}

pub(super) fn child_of<K: Key, V: Value, M: Rule<V>>(
    node: &NodeRef<K, V, M>,
    n: &BNode<K, V, M>,
    i: usize,
) -> Result<NodeRef<K, V, M>> {
    n.nodes
        .get(i)
        .cloned()
        .ok_or_else(|| corrupt(node, "a child is missing"))
}

pub(super) fn child<K: Key, V: Value, M: Rule<V>>(
    node: &NodeRef<K, V, M>,
    i: usize,
) -> Result<NodeRef<K, V, M>> {
    child_of(node, &*node.read()?, i)
}

pub(super) fn size<K: Key, V: Value, M: Rule<V>>(node: &NodeRef<K, V, M>) -> Result<usize> {
    Ok(node.read()?.items.len())
}
