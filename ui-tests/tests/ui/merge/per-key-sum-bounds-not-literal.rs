use durus_core::Persistent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const FLOOR: i64 = 0;

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Shop {
    #[merge(per_key(sum(min = FLOOR)))]
    stock: BTreeMap<String, i64>,
}

fn main() {}
