use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
enum Balance {
    Open {
        #[merge(sum)]
        amount: i64,
    },
    Closed,
}

fn main() {}
