use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "bank.Account", class = "bank.Other")]
struct Account {
    balance: i64,
}

fn main() {}
