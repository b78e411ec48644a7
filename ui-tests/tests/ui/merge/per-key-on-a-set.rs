use durus_core::Persistent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Page {
    #[merge(per_key(same))]
    tags: BTreeSet<String>,
}

fn main() {}
