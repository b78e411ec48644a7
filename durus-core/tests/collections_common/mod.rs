//! Helpers shared by the collection tests: a seeded PRNG, a storage that
//! counts what commits write, and the model-based BTree run.
#![allow(dead_code)]

use durus_core::{BTree, Connection, PRef, Persistent, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// The seeded generator of the workloads (splitmix64).
pub use durus_core::internals::SplitMix64 as Rng;

/// A root holding one tree.
#[derive(Persistent, Serialize, Deserialize, Default)]
pub struct TreeRoot {
    pub tree: BTree<u64, String>,
}

pub fn tree_of(conn: &Connection) -> Result<BTree<u64, String>> {
    let root: PRef<TreeRoot> = conn.root()?;
    let tree = root.read()?.tree.clone();
    Ok(tree)
}

fn bound(rng: &mut Rng, space: u64) -> Bound<u64> {
    match rng.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(rng.below(space)),
        _ => Bound::Excluded(rng.below(space)),
    }
}

fn valid(lo: Bound<u64>, hi: Bound<u64>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Included(a) | Excluded(a), Included(b)) => a <= b,
        (Included(a), Excluded(b)) => a <= b,
        (Excluded(a), Excluded(b)) => a < b,
        _ => true,
    }
}

/// Random inserts, removes, gets and ranges on a tree, checked against a
/// `BTreeMap`, with commits, aborts (the model rolls back too) and cache
/// shrinks interleaved. `reopen` makes a fresh connection on the same data.
/// Returns the largest depth the tree reached, its final depth and the
/// final (committed) model.
pub fn model_run(
    seed: u64,
    steps: usize,
    space: u64,
    reopen: &dyn Fn() -> Connection,
) -> Result<(usize, usize, BTreeMap<u64, String>)> {
    let mut max_depth = 0;
    let mut rng = Rng::new(seed);
    let conn = reopen();
    let mut tree = tree_of(&conn)?;
    let mut model: BTreeMap<u64, String> = tree
        .iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .collect();
    let mut committed = model.clone();
    for step in 0..steps {
        // Grow for the first half, shrink for the second.
        let grow = step < steps / 2;
        let (p_insert, p_remove) = if grow { (60, 15) } else { (15, 60) };
        let roll = rng.below(100);
        let mut k = rng.below(space);
        if !grow && rng.below(2) == 0 {
            // Aim removals at present keys so that the tree really shrinks.
            k = model.range(k..).next().map_or(k, |(present, _)| *present);
        }
        if roll < p_insert {
            let v = format!("{k}:{step}:{}", "x".repeat(rng.below(40) as usize));
            assert_eq!(
                tree.insert(k, v.clone())?,
                model.insert(k, v),
                "insert {k} at {step}"
            );
        } else if roll < p_insert + p_remove {
            assert_eq!(tree.remove(&k)?, model.remove(&k), "remove {k} at {step}");
        } else if roll < 88 {
            assert_eq!(tree.get(&k)?, model.get(&k).cloned(), "get {k} at {step}");
            assert_eq!(tree.contains_key(&k)?, model.contains_key(&k));
        } else if roll < 93 {
            let (lo, hi) = (bound(&mut rng, space), bound(&mut rng, space));
            if valid(lo, hi) {
                let take = rng.below(60) as usize;
                let rev = rng.below(2) == 0;
                let got: Vec<(u64, String)> = if rev {
                    tree.range((lo, hi))
                        .rev()
                        .take(take)
                        .collect::<Result<_>>()?
                } else {
                    tree.range((lo, hi)).take(take).collect::<Result<_>>()?
                };
                let want: Vec<(u64, String)> = if rev {
                    model
                        .range((lo, hi))
                        .rev()
                        .take(take)
                        .map(|(k, v)| (*k, v.clone()))
                        .collect()
                } else {
                    model
                        .range((lo, hi))
                        .take(take)
                        .map(|(k, v)| (*k, v.clone()))
                        .collect()
                };
                assert_eq!(got, want, "range {lo:?}..{hi:?} rev={rev} at {step}");
            }
        } else if roll < 96 {
            conn.commit()?;
            committed = model.clone();
        } else if roll < 98 {
            conn.abort()?;
            model = committed.clone();
        } else {
            conn.set_cache_size(1 + rng.below(40) as usize);
            conn.commit()?;
            committed = model.clone();
        }
        assert_eq!(tree.len()?, model.len() as u64, "len at {step}");
        if step % 400 == 0 {
            max_depth = max_depth.max(tree.depth()?);
            tree.verify()?;
            assert_eq!(
                tree.first()?,
                model.first_key_value().map(|(k, v)| (*k, v.clone()))
            );
            assert_eq!(
                tree.last()?,
                model.last_key_value().map(|(k, v)| (*k, v.clone()))
            );
        }
        if step % 1500 == 1499 {
            // Everything committed so far reads back in a new connection.
            conn.commit()?;
            committed = model.clone();
            drop(tree);
            let other = reopen();
            let t = tree_of(&other)?;
            let all: Vec<(u64, String)> = t.iter().collect::<Result<_>>()?;
            assert!(all
                .iter()
                .cloned()
                .eq(model.iter().map(|(k, v)| (*k, v.clone()))));
            drop(t);
            drop(other);
            tree = tree_of(&conn)?;
        }
    }
    conn.commit()?;
    tree.verify()?;
    let all: Vec<(u64, String)> = tree.iter().rev().collect::<Result<_>>()?;
    assert!(all
        .into_iter()
        .eq(model.iter().rev().map(|(k, v)| (*k, v.clone()))));
    Ok((max_depth, tree.depth()?, model))
}
