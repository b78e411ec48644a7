use durus_core::Persistent;
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "shop.Order", aliases = "shop.PurchaseOrder")]
struct Order {
    id: u64,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "shop.Item", aliases = ["shop.Item", "shop.Old", "shop.Old"])]
struct Item {
    id: u64,
}

fn main() {}
