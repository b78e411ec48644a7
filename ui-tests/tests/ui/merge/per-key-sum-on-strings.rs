use durus_core::Persistent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Page {
    #[merge(per_key(sum))]
    titles: BTreeMap<String, String>,
}

fn main() {}
