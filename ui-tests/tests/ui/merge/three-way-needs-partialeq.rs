use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Owner {
    name: String,
}

#[derive(Persistent, Serialize, Deserialize, Clone)]
struct Account {
    #[merge(sum)]
    balance: i64,
    owner: Owner,
}

fn main() {}
