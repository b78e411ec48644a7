//! The persistent types of the `durus bench` databases (the object shapes
//! of the benchmark definitions, section 1.1), with stable class names.
//!
//! They are the benchmark's, so they live with the command, not in the
//! library; their class names are pinned (`durus_bench.*`). The
//! integration tests use them too, to read and write the same records.

use super::{BenchCounter, CounterModel, KeyedCounters};
use durus_core::{PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Counter: one integer field, `value`, starting at 0. Concurrent
/// commits of it conflict (the application aborts and retries).
#[derive(Persistent, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[persistent(class = "durus_bench.Counter")]
pub struct Counter {
    pub value: i64,
}

/// A counter whose `value` merges: concurrent increments add up.
#[derive(Persistent, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[persistent(class = "durus_bench.MergeCounter")]
pub struct MergeCounter {
    #[merge(sum)]
    pub value: i64,
}

/// The root of a benchmark database: named counters of both kinds (W4
/// uses `c0`..`c<C-1>`, W5 `hot`), and W5 `btree-sum`'s tree.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "durus_bench.Root")]
pub struct BenchRoot {
    #[serde(default)]
    pub counters: BTreeMap<String, PRef<Counter>>,
    #[serde(default)]
    pub merge_counters: BTreeMap<String, PRef<MergeCounter>>,
    #[serde(default)]
    pub keyed: Option<KeyedCounters>,
}

impl BenchCounter for Counter {
    fn value(&self) -> i64 {
        self.value
    }
    fn increment(&mut self) {
        self.value += 1;
    }
}

impl BenchCounter for MergeCounter {
    fn value(&self) -> i64 {
        self.value
    }
    fn increment(&mut self) {
        self.value += 1;
    }
}

/// The types of the `durus bench` databases.
pub struct Model;

impl CounterModel for Model {
    type Root = BenchRoot;
    type Plain = Counter;
    type Merging = MergeCounter;

    fn plain(root: &BenchRoot, key: &str) -> Option<PRef<Counter>> {
        root.counters.get(key).cloned()
    }
    fn merging(root: &BenchRoot, key: &str) -> Option<PRef<MergeCounter>> {
        root.merge_counters.get(key).cloned()
    }
    fn insert_plain(root: &mut BenchRoot, key: String, counter: PRef<Counter>) {
        root.counters.insert(key, counter);
    }
    fn insert_merging(root: &mut BenchRoot, key: String, counter: PRef<MergeCounter>) {
        root.merge_counters.insert(key, counter);
    }
    fn keyed(root: &BenchRoot) -> Option<KeyedCounters> {
        root.keyed.clone()
    }
    fn insert_keyed(root: &mut BenchRoot, tree: KeyedCounters) {
        root.keyed = Some(tree);
    }
}
