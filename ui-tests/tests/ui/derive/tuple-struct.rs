use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
struct Point(i32, i32);

fn main() {}
