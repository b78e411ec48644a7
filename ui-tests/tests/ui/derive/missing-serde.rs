use durus_core::Persistent;

#[derive(Persistent)]
struct Account {
    balance: i64,
}

fn main() {}
