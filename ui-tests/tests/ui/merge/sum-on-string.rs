use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Account {
    #[merge(sum)]
    owner: String,
}

fn main() {}
