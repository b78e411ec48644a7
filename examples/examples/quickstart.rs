//! `cargo run --example quickstart [PATH]`: a database in a file, no server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("durus-quickstart.durus"));
    durus_examples::quickstart::run(&path, &mut std::io::stdout())
}
