//! Keeping the tree balanced: splitting a full node on the way down of an
//! insert, and, on the way down of a removal, topping a node up by
//! borrowing from a sibling (through the parent) or by joining two siblings
//! (Durus's `BNode`, after Cormen et al., chapter 18).

use super::node::{check_shape, child, corrupt, probe, size, too_deep, Probe};
use super::{BNode, NodeRef, MAX_DEPTH, MAX_KEYS, MIN_DEGREE};
use crate::collections::{Key, Value};
use crate::error::Result;
use crate::persistent::per_key::Rule;
use crate::persistent::PRef;
use std::borrow::Borrow;
use std::marker::PhantomData;

/// Splits the full child `i` of `parent` (which is not full) around its
/// middle entry, which moves up into `parent`.
pub(super) fn split_child<K: Key, V: Value, M: Rule<V>>(
    parent: &NodeRef<K, V, M>,
    i: usize,
) -> Result<()> {
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
                rule: PhantomData,
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
fn shift_right<K: Key, V: Value, M: Rule<V>>(parent: &NodeRef<K, V, M>, j: usize) -> Result<()> {
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
fn replace_separator<K: Key, V: Value, M: Rule<V>>(
    parent: &NodeRef<K, V, M>,
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
fn shift_left<K: Key, V: Value, M: Rule<V>>(parent: &NodeRef<K, V, M>, j: usize) -> Result<()> {
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
fn join_children<K: Key, V: Value, M: Rule<V>>(
    parent: &NodeRef<K, V, M>,
    j: usize,
) -> Result<NodeRef<K, V, M>> {
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
pub(super) fn extreme<K: Key, V: Value, M: Rule<V>>(
    node: &NodeRef<K, V, M>,
    last: bool,
) -> Result<Option<(K, V)>> {
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
pub(super) fn remove_in<K, V, M, Q>(
    node: &NodeRef<K, V, M>,
    key: &Q,
    depth: usize,
    moves_up: bool,
) -> Result<Option<(K, V)>>
where
    K: Key + Borrow<Q>,
    V: Value,
    M: Rule<V>,
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
                    let item = remove_in::<K, V, M, K>(side, &k, depth + 1, true)?
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
fn top_up<K: Key, V: Value, M: Rule<V>>(
    node: &NodeRef<K, V, M>,
    i: usize,
) -> Result<NodeRef<K, V, M>> {
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
