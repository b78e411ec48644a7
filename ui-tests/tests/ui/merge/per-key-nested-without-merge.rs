use durus_core::Persistent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct Stats {
    hits: u64,
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Page {
    #[merge(per_key(nested))]
    stats: BTreeMap<String, Stats>,
}

fn main() {}
