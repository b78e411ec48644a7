//! Unit tests of the leaf merge and of a tree held in memory.

use super::merge::merge_leaf;
use super::{BNode, BTree};
use crate::error::Result;
use crate::persistent::per_key::{Rule, Same, Sum};
use crate::persistent::{PRef, Persistent};
use std::marker::PhantomData;

fn leaf(keys: &[u32]) -> BNode<u32, u32> {
    BNode {
        items: keys.iter().map(|k| (*k, *k)).collect(),
        nodes: Vec::new(),
        reshaped: 0,
        rule: PhantomData,
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
    // The same update on both sides is a conflict (both read 50 and wrote
    // 1); a per-key rule says otherwise.
    let both = with(&initial, 50, 1);
    assert!(merge_leaf(&both, &both, &initial).is_err());
    let merged = merge_leaf(&ruled::<Same>(&both), &ruled(&both), &ruled(&initial));
    assert_eq!(merged.map(|n| n.items[5]), Ok((50, 1)));
    let (o, s) = (with(&initial, 50, 51), with(&initial, 50, 52));
    let merged = merge_leaf(&ruled::<Sum>(&o), &ruled(&s), &ruled(&initial));
    assert_eq!(merged.map(|n| n.items[5]), Ok((50, 53)));
    // Added by both sides: a conflict whatever the rule (the count).
    let o = with(&initial, 5, 1);
    assert!(merge_leaf(&ruled::<Sum>(&o), &ruled(&o), &ruled(&initial)).is_err());
}

/// The same leaf with another per-key rule.
fn ruled<M: Rule<u32>>(node: &BNode<u32, u32>) -> BNode<u32, u32, M> {
    BNode {
        items: node.items.clone(),
        nodes: Vec::new(),
        reshaped: node.reshaped,
        rule: PhantomData,
    }
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
