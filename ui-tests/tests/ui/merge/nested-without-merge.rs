use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct Stats {
    hits: u64,
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Page {
    #[merge(nested)]
    stats: Stats,
}

fn main() {}
