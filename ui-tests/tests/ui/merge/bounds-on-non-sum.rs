use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Stock {
    #[merge(max(min = 0))]
    high: i64,
    #[merge(min = 0)]
    units: i64,
    #[merge(sum(least = 0))]
    reserved: i64,
}

fn main() {}
