use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Stock {
    #[merge(sum)]
    units: i64,
    #[serde(skip)]
    #[merge(max)]
    cached_total: i64,
}

fn main() {}
