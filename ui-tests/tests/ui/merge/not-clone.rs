use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
struct Account {
    #[merge(sum)]
    balance: i64,
}

fn main() {}
