use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
enum Shape {
    Circle { r: f64 },
    Square { side: f64 },
}

fn main() {}
