use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq)]
struct Reading {
    #[merge(max)]
    peak: f64,
}

fn main() {}
