use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
struct Account {
    #[persistent(class = "x")]
    balance: i64,
}

fn main() {}
