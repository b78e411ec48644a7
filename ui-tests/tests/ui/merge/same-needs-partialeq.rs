use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Flag {
    on: bool,
}

#[derive(Persistent, Serialize, Deserialize, Clone)]
struct Item {
    #[merge(same)]
    archived: Flag,
}

fn main() {}
