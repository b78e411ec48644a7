//! `cargo run --release --example shop_bench -- [--seconds S] [--clients C] [--rounds R]`:
//! the shop service on a file, through `Database` and through a
//! hand-written pool of connection threads, in alternating rounds of one
//! run; prints requests/s of each and their ratio (medians).

use durus_core::{Database, DatabaseOptions};
use durus_examples::shop::client::Client;
use durus_examples::shop::{Backend, HandPool, Service};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCTS: usize = 16;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// Requests/s of `clients` threads ordering for `seconds`.
fn round(hand: bool, seconds: u64, clients: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!("durus-shop-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Database::open(dir.join("shop.durus")).expect("open");
    let pool_size = db.options().pool_size;
    let db = db.with_options(DatabaseOptions {
        attempts: 100,
        ..DatabaseOptions::default()
    });
    let backend = if hand {
        Backend::HandPool(HandPool::new(&db, pool_size))
    } else {
        Backend::Database(db)
    };
    let service = Service::start(backend, "127.0.0.1:0").expect("start");
    let mut c = Client::connect(service.address).expect("connect");
    for p in 0..PRODUCTS {
        let body = format!(r#"{{"sku":"p{p}","name":"Product {p}","stock":1000000000}}"#);
        let (status, _) = c.request("POST", "/products", Some(&body)).expect("post");
        assert_eq!(status, 201);
    }
    let running = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicU64::new(0));
    let address = service.address;
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (running, done) = (running.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(address).expect("connect");
                let mut n = t;
                while running.load(Ordering::Relaxed) {
                    n += 7;
                    let body = format!(r#"{{"sku":"p{}","qty":1}}"#, n % PRODUCTS);
                    let (status, text) = c.request("POST", "/orders", Some(&body)).expect("order");
                    assert_eq!(status, 201, "{text}");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    running.store(false, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = arg(&args, "--seconds", 5);
    let clients = arg(&args, "--clients", 8) as usize;
    let rounds = arg(&args, "--rounds", 3);
    let (mut db, mut hand) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let d = round(false, seconds, clients);
        let h = round(true, seconds, clients);
        println!("round {r}: Database {d:.0} req/s, hand-written pool {h:.0} req/s");
        db.push(d);
        hand.push(h);
    }
    let (d, h) = (median(db), median(hand));
    println!(
        "median: Database {d:.0} req/s, hand-written pool {h:.0} req/s, ratio {:.2}",
        d / h
    );
}
