//! `cargo run --example jobs -- [--server HOST:PORT] [--workers N] [--jobs N]`:
//! workers that sleep until a job arrives, and how fast they pick jobs up.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(durus_examples::jobs::main_with_args(&args));
}
