//! Measures the file storage: open time, commit rate, pack time and memory.
//!
//! Run in release mode: `cargo run --release -p durus-core --example file_bench [DIR]`.
//! Open and pack run in fresh processes (this program re-runs itself) so
//! that each measures only itself, peak memory included.

use durus_core::internals::record;
use durus_core::storage::file::{FileOptions, FsyncPolicy};
use durus_core::storage::NoConflicts;
use durus_core::{Connection, FileStorage, Hub, Oid, PRef, Persistent, Storage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Items per container node, as a wide B-tree node would hold.
const FANOUT: u64 = 1000;

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn rec(oid: Oid, data: &[u8], refs: &[Oid]) -> durus_core::Result<Vec<u8>> {
    Ok(record::pack(oid, data, refs)?)
}

fn item_data(i: u64) -> Vec<u8> {
    format!("item {i:>10} {}", "s".repeat(100)).into_bytes()
}

/// Builds `n` items (each referring to one parent) under nodes of `FANOUT`
/// refs under the root, `per_commit` items per transaction. Returns the
/// node oids and their items.
fn build(path: &Path, n: u64, per_commit: u64) -> Res<Vec<(Oid, Vec<Oid>)>> {
    let _ = std::fs::remove_file(path);
    let mut fs = FileStorage::open_with(path, FileOptions::new().fsync(FsyncPolicy::Never))?;
    let root = fs.new_oid()?;
    let parent = fs.new_oid()?;
    let mut nodes: Vec<(Oid, Vec<Oid>)> = Vec::new();
    let mut i = 0;
    while i < n {
        fs.begin();
        let first_touched = nodes.len().saturating_sub(1);
        let end = (i + per_commit).min(n);
        while i < end {
            if nodes
                .last()
                .is_none_or(|(_, items)| items.len() as u64 == FANOUT)
            {
                nodes.push((fs.new_oid()?, Vec::new()));
            }
            let oid = fs.new_oid()?;
            fs.store(oid, rec(oid, &item_data(i), &[parent])?)?;
            if let Some((_, items)) = nodes.last_mut() {
                items.push(oid);
            }
            i += 1;
        }
        for (node, items) in nodes.iter().skip(first_touched) {
            fs.store(*node, rec(*node, b"node", items)?)?;
        }
        let refs: Vec<Oid> = std::iter::once(parent)
            .chain(nodes.iter().map(|(o, _)| *o))
            .collect();
        fs.store(root, rec(root, b"root", &refs)?)?;
        fs.store(parent, rec(parent, b"parent", &[])?)?;
        fs.end(&mut NoConflicts)?.wait()?;
    }
    Ok(nodes)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

fn child(mode: &str, path: &Path) -> Res<String> {
    let out = Command::new(std::env::current_exe()?)
        .arg(mode)
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(format!("{mode} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Child: open the file and load the root; prints seconds and RSS in KiB.
fn open_once(path: &Path) -> Res<()> {
    let t = Instant::now();
    let mut fs = FileStorage::open(path)?;
    fs.load(Oid::ROOT)?;
    let secs = t.elapsed().as_secs_f64();
    println!("{secs} {}", proc_status("VmRSS:"));
    Ok(())
}

/// Child: pack the file; prints seconds, peak memory before and after (KiB).
fn pack_once(path: &Path) -> Res<()> {
    let mut fs = FileStorage::open(path)?;
    let before = proc_status("VmHWM:");
    let t = Instant::now();
    fs.pack()?;
    let secs = t.elapsed().as_secs_f64();
    let removed = fs.sync()?.len();
    println!("{secs} {before} {} {removed}", proc_status("VmHWM:"));
    Ok(())
}

fn open_times(path: &Path) -> Res<(f64, u64)> {
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..3 {
        let line = child("open", path)?;
        let mut parts = line.split(' ');
        times.push(parts.next().unwrap_or("0").parse()?);
        rss = parts.next().unwrap_or("0").parse()?;
    }
    Ok((median(times), rss))
}

fn bench_open(dir: &Path, n: u64) -> Res<()> {
    let path = dir.join(format!("open-{n}.durus"));
    let t = Instant::now();
    build(&path, n, 10_000)?;
    let built = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path)?.len();
    let (unpacked, rss_u) = open_times(&path)?;
    FileStorage::open(&path)?.pack()?;
    let (packed, rss_p) = open_times(&path)?;
    println!(
        "open {n} objects: build {built:.1} s ({size} bytes); unpacked {:.4} s (RSS {rss_u} KiB); packed {:.5} s (RSS {rss_p} KiB)",
        unpacked, packed
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(dir.join(format!("open-{n}.durus.prepack")));
    Ok(())
}

fn bench_pack(dir: &Path, n: u64) -> Res<()> {
    let path = dir.join(format!("pack-{n}.durus"));
    let nodes = build(&path, n, 10_000)?;
    {
        // Pack once so the live data is in the offset map, then drop every
        // other item (half of them become garbage) in transactions of 1000 nodes.
        let mut fs = FileStorage::open_with(&path, FileOptions::new().fsync(FsyncPolicy::Never))?;
        fs.pack()?;
        for chunk in nodes.chunks(1000) {
            fs.begin();
            for (node, items) in chunk {
                let kept: Vec<Oid> = items.iter().copied().step_by(2).collect();
                fs.store(*node, rec(*node, b"node", &kept)?)?;
            }
            fs.end(&mut NoConflicts)?.wait()?;
        }
    }
    let before = std::fs::metadata(&path)?.len();
    let line = child("pack", &path)?;
    let after = std::fs::metadata(&path)?.len();
    let parts: Vec<&str> = line.split(' ').collect();
    println!(
        "pack {n} objects, half garbage: {} s, VmHWM {} KiB before -> {} KiB after, {} removed, {before} -> {after} bytes",
        parts.first().unwrap_or(&"?"),
        parts.get(1).unwrap_or(&"?"),
        parts.get(2).unwrap_or(&"?"),
        parts.get(3).unwrap_or(&"?"),
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(dir.join(format!("pack-{n}.durus.prepack")));
    Ok(())
}

fn bench_single(dir: &Path, policy: FsyncPolicy) -> Res<()> {
    let path = dir.join("single.durus");
    let _ = std::fs::remove_file(&path);
    let mut fs = FileStorage::open_with(&path, FileOptions::new().fsync(policy))?;
    let oid = fs.new_oid()?;
    let limit = Duration::from_secs(3);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < limit {
        fs.begin();
        fs.store(oid, rec(oid, &item_data(n), &[])?)?;
        fs.end(&mut NoConflicts)?.wait()?;
        n += 1;
    }
    println!(
        "1 committer, fsync {policy:?}: {:.0} commits/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    drop(fs);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "bench.Root")]
struct Root {
    counters: Vec<PRef<Counter>>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "bench.Counter")]
struct Counter {
    value: u64,
}

fn bench_hub(dir: &Path, policy: FsyncPolicy, threads: usize) -> Res<()> {
    let path = dir.join("hub.durus");
    let _ = std::fs::remove_file(&path);
    let hub = Hub::new(FileStorage::open_with(
        &path,
        FileOptions::new().fsync(policy),
    )?);
    {
        let conn = Connection::new(hub.storage());
        let root: PRef<Root> = conn.root()?;
        for _ in 0..threads {
            root.write()?.counters.push(PRef::new(Counter::default()));
        }
        conn.commit()?;
    }
    let limit = Duration::from_secs(3);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let hub = hub.clone();
            std::thread::spawn(move || -> durus_core::Result<u64> {
                let conn = Connection::new(hub.storage());
                let root: PRef<Root> = conn.root()?;
                let mine = root.read()?.counters[k].clone();
                let mut n = 0;
                while start.elapsed() < limit {
                    mine.write()?.value += 1;
                    conn.commit()?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| "thread panicked")??;
    }
    println!(
        "{threads} committers through the hub, fsync {policy:?}: {:.0} commits/s",
        total as f64 / start.elapsed().as_secs_f64()
    );
    hub.close()?;
    drop(hub);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("open"), Some(path)) => return open_once(Path::new(path)),
        (Some("pack"), Some(path)) => return pack_once(Path::new(path)),
        _ => {}
    }
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("durus-file-bench"));
    std::fs::create_dir_all(&dir)?;
    let only = std::env::var("FILE_BENCH").unwrap_or_default();
    let wants = |what: &str| only.is_empty() || only.split(',').any(|w| w == what);
    if wants("commit") {
        for policy in [FsyncPolicy::Always, FsyncPolicy::Never] {
            bench_single(&dir, policy)?;
            bench_hub(&dir, policy, 1)?;
            bench_hub(&dir, policy, 8)?;
        }
    }
    if wants("open") {
        bench_open(&dir, 100_000)?;
        bench_open(&dir, 1_000_000)?;
    }
    if wants("pack") {
        bench_pack(&dir, 300_000)?;
        bench_pack(&dir, 1_000_000)?;
    }
    Ok(())
}
