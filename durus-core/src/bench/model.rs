//! The object shapes of the workloads (WORKLOADS.md, section 1.1) that the
//! runner stores, with stable class names.

use crate::PRef;
use crate::Persistent;
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
/// uses `c0`..`c<C-1>`, W5 `hot`).
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "durus_bench.Root")]
pub struct BenchRoot {
    #[serde(default)]
    pub counters: BTreeMap<String, PRef<Counter>>,
    #[serde(default)]
    pub merge_counters: BTreeMap<String, PRef<MergeCounter>>,
}
