//! [`Range`]: the lazy iterator over a tree, from either end, loading
//! nodes only as it reaches them.

use super::node::{check_shape, child_of, too_deep};
use super::{BTree, NodeRef, MAX_DEPTH};
use crate::collections::{Key, Value};
use crate::error::{EncodingError, Error, Result};
use crate::persistent::per_key::{Rule, Strict};
use std::ops::Bound;

/// One node on an iterator's path and the next position to yield from it.
struct Frame<K: Key, V: Value, M: Rule<V>> {
    node: NodeRef<K, V, M>,
    /// Forward: the index of the next entry. Backward: one past it.
    pos: usize,
}

/// A path through the tree for one end of a [`Range`].
struct Cursor<K: Key, V: Value, M: Rule<V>> {
    stack: Vec<Frame<K, V, M>>,
    /// A subtree to enter before the next step (entered lazily, so a step
    /// loads nothing beyond what it yields).
    pending: Option<NodeRef<K, V, M>>,
}

/// A lazy iterator over a range of a [`BTree`], from either end.
///
/// Yields `Result<(K, V)>`: a node that fails to load ends the iteration
/// with that error. It holds no borrow between steps.
///
/// ```
/// use durus_core::BTree;
///
/// let tree: BTree<u32, u32> = BTree::new();
/// tree.extend((0..10).map(|k| (k, k * k)))?;
/// let squares: Vec<(u32, u32)> = tree.range(3..6).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [(3, 9), (4, 16), (5, 25)]);
/// assert_eq!(tree.iter().next_back().transpose()?, Some((9, 81)));
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct Range<K: Key, V: Value, M: Rule<V> = Strict> {
    tree: BTree<K, V, M>,
    /// Moves up as the front yields.
    lower: Bound<K>,
    /// Moves down as the back yields.
    upper: Bound<K>,
    front: Option<Cursor<K, V, M>>,
    back: Option<Cursor<K, V, M>>,
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

impl<K: Key, V: Value, M: Rule<V>> Cursor<K, V, M> {
    /// The path to the first entry at or after `bound` (forward), or to the
    /// last entry at or before it (backward).
    fn seek(root: NodeRef<K, V, M>, bound: &Bound<K>, forward: bool) -> Result<Cursor<K, V, M>> {
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

impl<K: Key, V: Value, M: Rule<V>> Range<K, V, M> {
    /// The entries of `tree` between `lower` and `upper`; nothing loads yet.
    pub(super) fn new(tree: BTree<K, V, M>, lower: Bound<K>, upper: Bound<K>) -> Self {
        Range {
            tree,
            lower,
            upper,
            front: None,
            back: None,
            done: false,
        }
    }

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

impl<K: Key, V: Value, M: Rule<V>> Iterator for Range<K, V, M> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_from(true)
    }
}

impl<K: Key, V: Value, M: Rule<V>> DoubleEndedIterator for Range<K, V, M> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_from(false)
    }
}

impl<K: Key, V: Value, M: Rule<V>> std::iter::FusedIterator for Range<K, V, M> {}
