//! W5 `btree-sum`: the hot counter spread over 16 keys of one `BTree`
//! whose values are per-key counters (`per_key::Sum`). Client `idx`'s
//! `j`-th successful increment is of key `(idx + j) % 16`, so the runner
//! knows what each key must hold from the clients' success counts alone.

use super::procs::bench_error;
use super::WorkerOutcome;
use durus_core::error::{Error, Result};
use durus_core::{per_key, BTree};

/// The tree of W5 `btree-sum`: key `k00`..`k15` to its count.
pub type KeyedCounters = BTree<String, i64, per_key::Sum>;

/// The number of keys.
pub const KEYS: usize = 16;

fn key(n: usize) -> String {
    format!("k{:02}", n % KEYS)
}

/// A new tree with every key at 0 (made before the run, so that no client
/// adds a key: a key added by two clients at once conflicts in a tree).
pub fn make() -> Result<KeyedCounters> {
    let tree = KeyedCounters::default();
    for n in 0..KEYS {
        tree.insert(key(n), 0)?;
    }
    Ok(tree)
}

/// Loads every node of the tree (before T0).
pub fn load(tree: &KeyedCounters) -> Result<()> {
    values(tree).map(drop)
}

/// Client `idx`'s increment after `done` successes: read, add one, write.
pub fn increment(tree: &KeyedCounters, idx: usize, done: u64) -> Result<()> {
    let k = key(idx + (done % KEYS as u64) as usize);
    let n = tree.get(&k)?.unwrap_or(0);
    tree.insert(k, n + 1).map(drop)
}

/// The count of each key, in key order.
pub fn values(tree: &KeyedCounters) -> Result<Vec<i64>> {
    tree.values().collect()
}

/// What each key must hold after the clients' successes.
pub fn expected(results: &[WorkerOutcome]) -> Vec<i64> {
    let mut out = vec![0i64; KEYS];
    for r in results {
        for (n, slot) in out.iter_mut().enumerate() {
            // Successes j with (idx + j) % KEYS == n.
            let first = (n + KEYS - r.idx % KEYS) % KEYS;
            if (first as u64) < r.ok {
                *slot += ((r.ok - first as u64 - 1) / KEYS as u64 + 1) as i64;
            }
        }
    }
    out
}

/// `btree-sum` keeps its tree in the root: it has no detached counter.
pub fn not_detached() -> Error {
    bench_error("--variant btree-sum keeps its tree in the root; it takes no --oid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_each_clients_turns() {
        let outcome = |idx, ok| WorkerOutcome {
            idx,
            ok,
            ..WorkerOutcome::default()
        };
        let results = [outcome(0, 17), outcome(3, 2), outcome(20, 0)];
        let mut want = vec![1i64; KEYS];
        want[0] += 1; // client 0's 17th increment
        want[3] += 1; // client 3's two
        want[4] += 1;
        assert_eq!(expected(&results), want);
        assert_eq!(expected(&results).iter().sum::<i64>(), 19);
    }
}
