use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Stock {
    #[merge(sum(min = 0))]
    weight: f64,
}

fn main() {}
