use durus_core::{per_key, PRef, Persistent, PersistentDict};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct Stats {
    hits: u64,
}

#[derive(Persistent, Serialize, Deserialize)]
struct Site {
    stats: PRef<PersistentDict<String, Stats, per_key::Nested>>,
}

fn main() {}
