//! W1 (insert), W4 (disjoint commits) and W5 (one `#[merge(sum)]`
//! counter) of the shared workload definitions on `PgStorage`, next to
//! the same loops on the file storage, in one run. Figures are in
//! docs/POSTGRES.md.
//!
//!     cargo run --release -p durus-core --features postgres --example pg_bench -- \
//!         --server postgresql://postgres@127.0.0.1:55433 [--n 100000] [--batch 1000] \
//!         [--clients 8] [--duration 10] [--dir /tmp]
//!
//! `--server` names a PostgreSQL server (no database): each run gets a
//! new database `durus_bench_*` there (dropped first). W4/W5 clients are
//! threads, each with its own connection: its own `PgStorage` on
//! PostgreSQL, its own session of a `Hub` over one `FileStorage`
//! (fsync always, the default) for the file.

use durus_core::{
    BTree, Connection, FileStorage, Hub, PRef, Persistent, PgStorage, Result, Storage,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[derive(Persistent, Serialize, Deserialize, Default, Clone)]
#[persistent(class = "pg_bench.Parent")]
struct Parent {
    name: String,
}

#[derive(Persistent, Serialize, Deserialize, Clone)]
#[persistent(class = "pg_bench.Item")]
struct Item {
    n: u64,
    s: String,
    parent: PRef<Parent>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "pg_bench.Root")]
struct Root {
    parent: Option<PRef<Parent>>,
    items: Option<BTree<u64, PRef<Item>>>,
    counters: Vec<PRef<Counter>>,
    hot: Option<PRef<Counter>>,
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq)]
#[persistent(class = "pg_bench.Counter")]
struct Counter {
    #[merge(sum)]
    value: i64,
}

struct Args {
    server: String,
    n: u64,
    batch: u64,
    clients: usize,
    duration: f64,
    dir: std::path::PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        server: String::new(),
        n: 100_000,
        batch: 1_000,
        clients: 8,
        duration: 10.0,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let bad = || -> ! { usage(&format!("bad value for {flag}: {value}")) };
        match flag.as_str() {
            "--server" => args.server = value.clone(),
            "--n" => args.n = value.parse().unwrap_or_else(|_| bad()),
            "--batch" => args.batch = value.parse().unwrap_or_else(|_| bad()),
            "--clients" => args.clients = value.parse().unwrap_or_else(|_| bad()),
            "--duration" => args.duration = value.parse().unwrap_or_else(|_| bad()),
            "--dir" => args.dir = value.clone().into(),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if args.server.is_empty() || args.batch == 0 || args.clients == 0 || args.duration <= 0.0 {
        usage("--server is required; --batch, --clients and --duration must be positive");
    }
    args
}

fn usage(why: &str) -> ! {
    eprintln!(
        "pg_bench: {why}\nusage: pg_bench --server postgresql://USER@HOST:PORT \
         [--n N] [--batch B] [--clients C] [--duration SECONDS] [--dir DIR]"
    );
    std::process::exit(2)
}

/// A new empty database `name` on the server; its URL.
fn fresh_database(server: &str, name: &str) -> String {
    let base = server.trim_end_matches('/');
    let mut admin = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .expect("connect to the server's postgres database");
    // Two statements: neither may run inside a transaction block.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop the old database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("make a fresh database");
    format!("{base}/{name}")
}

fn item_string(i: u64) -> String {
    // 100 characters, different for every i (the content does not matter
    // to the storage; the length does).
    let mut s = format!("{i:0>20}");
    while s.len() < 100 {
        s.push_str(&format!(
            "{:016x}",
            (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ));
    }
    s.truncate(100);
    s
}

/// W1: N items into a BTree, a commit every B. Objects per second.
fn w1(conn: Connection, n: u64, batch: u64) -> Result<f64> {
    let root: PRef<Root> = conn.root()?;
    let parent = PRef::new(Parent {
        name: "parent".into(),
    });
    let items: BTree<u64, PRef<Item>> = BTree::new();
    {
        let mut r = root.write()?;
        r.parent = Some(parent.clone());
        r.items = Some(items.clone());
    }
    conn.commit()?;
    let strings: Vec<String> = (0..n).map(item_string).collect();
    let t0 = Instant::now();
    for (i, s) in (0..n).zip(strings) {
        let item = Item {
            n: i,
            s,
            parent: parent.clone(),
        };
        items.insert(i, PRef::new(item))?;
        if (i + 1) % batch == 0 {
            conn.commit()?;
        }
    }
    conn.commit()?;
    let seconds = t0.elapsed().as_secs_f64();
    assert_eq!(items.len()?, n, "W1 lost items");
    Ok(n as f64 / seconds)
}

/// W4 (each client its own counter) or W5 (all one `#[merge(sum)]`
/// counter): C threads commit increments for D seconds from a common
/// start. Commits per second, and conflicts.
fn counters(
    open: &(dyn Fn() -> Box<dyn Storage> + Sync),
    clients: usize,
    d: f64,
    hot: bool,
) -> Result<(f64, u64)> {
    {
        let conn = Connection::with_cache_size(open(), 1_000);
        let root: PRef<Root> = conn.root()?;
        let mut r = root.write()?;
        r.counters = (0..clients)
            .map(|_| PRef::new(Counter::default()))
            .collect();
        r.hot = Some(PRef::new(Counter::default()));
        drop(r);
        conn.commit()?;
    }
    let barrier = Arc::new(Barrier::new(clients));
    let results: Vec<Result<(u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|idx| {
                let barrier = barrier.clone();
                s.spawn(move || -> Result<(u64, u64)> {
                    let conn = Connection::with_cache_size(open(), 1_000);
                    let root: PRef<Root> = conn.root()?;
                    let counter = if hot {
                        root.read()?.hot.clone().expect("hot")
                    } else {
                        root.read()?.counters[idx].clone()
                    };
                    counter.read()?;
                    conn.abort()?;
                    barrier.wait();
                    let t0 = Instant::now();
                    let (mut ok, mut conflicts) = (0, 0);
                    while t0.elapsed() < Duration::from_secs_f64(d) {
                        counter.write()?.value += 1;
                        match conn.commit() {
                            Ok(()) => ok += 1,
                            Err(e) if e.is_conflict() => {
                                conflicts += 1;
                                conn.abort()?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    if !hot {
                        conn.abort()?;
                        assert_eq!(counter.read()?.value, ok as i64, "W4 lost commits");
                    }
                    Ok((ok, conflicts))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let (mut ok, mut conflicts) = (0, 0);
    for r in results {
        let (o, c) = r?;
        ok += o;
        conflicts += c;
    }
    if hot {
        let conn = Connection::new(open());
        let root: PRef<Root> = conn.root()?;
        let value = root.read()?.hot.clone().expect("hot").read()?.value;
        assert_eq!(value, ok as i64, "W5 lost increments");
    }
    Ok((ok as f64 / d, conflicts))
}

/// Median microseconds of `f` over `k` calls.
fn median_us(k: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut t: Vec<f64> = (0..k)
        .map(|i| {
            let t0 = Instant::now();
            f(i);
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[k / 2]
}

/// Round trips on the W1 database: a bare `SELECT 1`, a bare prepared
/// load of one record, and `PgStorage::load` (median of 2,000 each).
fn round_trips(url: &str, n: u64) -> Result<()> {
    let k = 2_000;
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let select1 = median_us(k, |_| {
        client.query_one("SELECT 1", &[]).expect("select 1");
    });
    let load = client
        .prepare("SELECT data FROM durus_object WHERE oid = $1")
        .expect("prepare");
    let bare = median_us(k, |i| {
        let oid = (i as u64 * 7919 % n.max(1)) as i64;
        client.query_opt(&load, &[&oid]).expect("load");
    });
    let mut storage = PgStorage::connect(url)?;
    let ours = median_us(k, |i| {
        let _ = storage.load(durus_core::Oid(i as u64 * 7919 % n.max(1)));
    });
    println!(
        "round trip  SELECT 1 {select1:.0} us; bare record SELECT {bare:.0} us; \
         PgStorage::load {ours:.0} us (p50)"
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args();
    println!(
        "pg_bench: N={} B={} C={} D={}s; {} cores",
        args.n,
        args.batch,
        args.clients,
        args.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let url = fresh_database(&args.server, "durus_bench_w1");
    let pg_w1 = w1(
        Connection::with_cache_size(Box::new(PgStorage::connect(&url)?), 10_000),
        args.n,
        args.batch,
    )?;
    println!("W1 insert   PgStorage         {pg_w1:>10.0} objs/s");
    round_trips(&url, args.n)?;
    let file = args
        .dir
        .join(format!("pg_bench_w1_{}.durus", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let file_w1 = w1(
        Connection::with_cache_size(Box::new(FileStorage::open(&file)?), 10_000),
        args.n,
        args.batch,
    )?;
    let _ = std::fs::remove_file(&file);
    println!("W1 insert   FileStorage       {file_w1:>10.0} objs/s");

    for (name, hot) in [("W4 disjoint", false), ("W5 hot sum ", true)] {
        let db = if hot {
            "durus_bench_w5"
        } else {
            "durus_bench_w4"
        };
        let url = fresh_database(&args.server, db);
        let open_pg =
            || -> Box<dyn Storage> { Box::new(PgStorage::connect(&url).expect("connect")) };
        let (rate, conflicts) = counters(&open_pg, args.clients, args.duration, hot)?;
        println!(
            "{name} PgStorage   C={} {rate:>10.0} commits/s ({conflicts} conflicts)",
            args.clients
        );
        let file = args
            .dir
            .join(format!("pg_bench_{db}_{}.durus", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let hub = Hub::new(FileStorage::open(&file)?);
        let open_file = || -> Box<dyn Storage> { Box::new(hub.storage()) };
        let (rate, conflicts) = counters(&open_file, args.clients, args.duration, hot)?;
        drop(hub);
        let _ = std::fs::remove_file(&file);
        println!(
            "{name} FileStorage C={} {rate:>10.0} commits/s ({conflicts} conflicts, hub)",
            args.clients
        );
    }
    Ok(())
}
