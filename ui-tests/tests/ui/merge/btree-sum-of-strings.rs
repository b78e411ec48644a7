use durus_core::{per_key, BTree, Persistent};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
struct Site {
    titles: BTree<String, String, per_key::Sum>,
}

fn main() {}
