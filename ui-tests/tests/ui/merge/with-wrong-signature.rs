use durus_core::Persistent;
use serde::{Deserialize, Serialize};

fn longest(a: &String, b: &String) -> String {
    if a.len() >= b.len() { a.clone() } else { b.clone() }
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Doc {
    #[merge(with = longest)]
    title: String,
}

fn main() {}
