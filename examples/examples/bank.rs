//! `cargo run --example bank -- [--clients N] [--ops M] [--accounts A]`:
//! client processes making concurrent deposits and transfers through a
//! storage server; the total must come out exact.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(durus_examples::bank::main_with_args(&args));
}
