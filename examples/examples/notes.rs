//! `cargo run --example notes -- [--db PATH] add "text" [--tag T]... | list
//! | tag ID TAG | find [--tag T] [--from DATE] [--to DATE]`: notes kept in a
//! database file across runs.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(durus_examples::notes::main_with_args(&args));
}
