use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Stock {
    #[merge(sum(min = 10, max = 0))]
    units: i64,
}

fn main() {}
