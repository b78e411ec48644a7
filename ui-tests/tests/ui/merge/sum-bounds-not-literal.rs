use durus_core::Persistent;
use serde::{Deserialize, Serialize};

const LIMIT: i64 = 10;

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Stock {
    #[merge(sum(min = LIMIT))]
    units: i64,
    #[merge(sum(max = "100"))]
    reserved: i64,
}

fn main() {}
