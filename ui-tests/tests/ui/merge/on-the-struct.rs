use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
#[merge(sum)]
struct Account {
    balance: i64,
}

fn main() {}
