use durus_core::Persistent;

#[derive(Persistent)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
