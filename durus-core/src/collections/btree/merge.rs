//! The merge rules of a tree's records (rules 2 and 4 of the
//! [module docs](super)). The `reshaped` count a leaf carries in memory is
//! how rule 2 learns that this transaction moved the leaf's key range.

use super::{BNode, BTreeState, NodeRef, MAX_KEYS, MIN_KEYS};
use crate::collections::{Key, Value};
use crate::persistent::merge::{self as rules, MergeConflict};
use crate::persistent::per_key::Rule;
use crate::persistent::Persistent;
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Rule 2 of the module docs: the key-wise three-way merge of a leaf; a
/// key both sides changed goes to the tree's per-key rule `M`.
pub(super) fn merge_leaf<K: Key, V: Value, M: Rule<V>>(
    ours: &BNode<K, V, M>,
    stored: &BNode<K, V, M>,
    initial: &BNode<K, V, M>,
) -> Result<BNode<K, V, M>, MergeConflict> {
    let conflict = |reason: &str| MergeConflict::new(BNode::<K, V, M>::CLASS_NAME, reason);
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
            s.cloned()
        } else if s == i {
            o.cloned()
        } else if o.is_some() != i.is_some() && s.is_some() != i.is_some() {
            // Whatever the rule, the tree's count would count it twice.
            return Err(conflict("a key was added or removed by both sides"));
        } else {
            M::merge_key(o, s, i).map_err(|e| rules::in_field(BNode::<K, V, M>::CLASS_NAME, e))?
        };
        if let Some(v) = merged {
            items.push((k.clone(), v));
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
        rule: PhantomData,
    })
}

/// Rule 4 of the module docs: the merge of the tree's record.
pub(super) fn merge_state<K: Key, V: Value, M: Rule<V>>(
    ours: &BTreeState<K, V, M>,
    stored: &BTreeState<K, V, M>,
    initial: &BTreeState<K, V, M>,
) -> Result<BTreeState<K, V, M>, MergeConflict> {
    let same = |a: &NodeRef<K, V, M>, b: &NodeRef<K, V, M>| {
        a.ptr_eq(b) || (a.oid().is_some() && a.oid() == b.oid())
    };
    if !same(&ours.root, &initial.root) || !same(&stored.root, &initial.root) {
        return Err(MergeConflict::new(
            BTreeState::<K, V, M>::CLASS_NAME,
            "the root node was replaced",
        ));
    }
    let len =
        rules::sum(&ours.len, &stored.len, &initial.len).map_err(|e| rules::in_field("len", e))?;
    Ok(BTreeState {
        root: ours.root.clone(),
        len,
    })
}
