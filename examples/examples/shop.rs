//! `cargo run --example shop -- [--db PATH | --server ADDRESS] [--bind HOST:PORT]`:
//! a web shop service on `Database` (see `durus_examples::shop`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(durus_examples::shop::main_with_args(&args));
}
