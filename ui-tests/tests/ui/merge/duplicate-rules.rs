use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Account {
    #[merge(sum, max)]
    balance: i64,
    #[merge(ours)]
    #[merge(theirs)]
    note: String,
}

fn main() {}
