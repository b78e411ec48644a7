//! Counters incremented by many client processes through one server: the
//! W4/W5 workers of `durus bench`, Python Durus clients beside them, and
//! short runs of `durus bench w4` / `w5` whose result lines must verify.

mod support;

use durus_cli::bench::counters::{self, Mode, Variant};
use durus_cli::bench::model::Model;
use durus_cli::bench::procs::{self, WorkerOutput};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::durus::{durus_bench, ChildServer, DURUS};

/// Starts `clients` `durus bench worker` processes on one counter, each
/// stopping after `count` successes; returns their results.
fn run_workers(
    address: &str,
    variant: Variant,
    clients: usize,
    count: u64,
    oid: Option<u64>,
    start_at: f64,
) -> Vec<WorkerOutput> {
    let args_for = |i: usize| {
        let mut a: Vec<String> = [
            "bench",
            "worker",
            "--mode",
            "w5",
            "--variant",
            variant.name(),
            "--server",
            address,
            "--idx",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(i.to_string());
        a.extend(["--start-at".into(), format!("{start_at:.6}")]);
        a.extend(["--duration".into(), "60".into()]);
        a.extend(["--count".into(), count.to_string()]);
        if let Some(oid) = oid {
            a.extend(["--oid".into(), oid.to_string()]);
        }
        a
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    procs::run_workers(Path::new(DURUS), clients, args_for, deadline).expect("workers")
}

#[test]
fn eight_processes_increment_a_merge_counter_to_exactly_4000_without_conflicts() {
    let mut server = ChildServer::start(&[]);
    let address = server.address.clone();
    counters::setup::<Model>(&address, Mode::W5, Variant::Merging, 1).expect("setup");
    let start_at = procs::wall_now() + 1.5;
    let results = run_workers(&address, Variant::Merging, 8, 500, None, start_at);
    assert_eq!(results.len(), 8);
    for r in &results {
        assert_eq!(r.int("ok"), 500, "every worker made its 500 increments");
        assert_eq!(r.int("conflicts"), 0, "no conflict reached the application");
    }
    let merges: u64 = results.iter().map(|r| r.int("merges")).sum();
    assert!(merges > 0, "concurrent commits were merged, not serialized");
    let value = counters::counter_value::<Model>(&address, Variant::Merging, "hot").expect("value");
    assert_eq!(value, 4000);
    assert!(server.stop());
}

const PY_MODEL: &str = r#"
import sys, time
from durus.client_storage import ClientStorage
from durus.connection import Connection
from durus.persistent import Persistent
from durus.error import ConflictError

class Counter(Persistent):
    def __init__(self):
        self.value = 0

port = int(sys.argv[1])
def connect():
    return Connection(ClientStorage(host='127.0.0.1', port=port))
"#;

const PY_SETUP: &str = r#"
c = connect()
root = c.get_root()
root['py0'] = Counter(); root['py1'] = Counter(); root['shared'] = Counter()
c.commit()
print('ok')
"#;

const PY_WORKER: &str = r#"
idx, rounds, start_at = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
c = connect()
root = c.get_root()
mine = root['py%d' % idx]; shared = root['shared']
mine.value; shared.value
c.abort()
delay = start_at - time.time()
if delay > 0:
    time.sleep(delay)
done = conflicts = 0
while done < rounds and conflicts < 100000:
    try:
        mine.value += 1
        shared.value += 1
        c.commit()
        done += 1
    except ConflictError:
        c.abort()
        conflicts += 1
assert done == rounds, (done, conflicts)
print('done', done, 'conflicts', conflicts)
"#;

const PY_CHECK: &str = r#"
rounds = int(sys.argv[2])
c = connect()
root = c.get_root()
assert root['py0'].value == rounds, root['py0'].value
assert root['py1'].value == rounds, root['py1'].value
assert root['shared'].value == 2 * rounds, root['shared'].value
print('ok')
"#;

#[test]
fn python_clients_retrying_conflicts_and_rust_clients_merging_lose_nothing() {
    let mut server = ChildServer::start(&[]);
    let address = server.address.clone();
    let port = server.port.to_string();
    // Python makes the root (a PersistentDict) and its counters; the Rust
    // merge counter lives under an oid of its own.
    let out = support::run_python(&format!("{PY_MODEL}{PY_SETUP}"), &[&port]);
    assert_eq!(out.trim(), "ok");
    let oid = counters::store_detached::<Model>(&address, Variant::Merging).expect("rust counter");

    let rounds = 200;
    let start_at = procs::wall_now() + 3.0;
    let python: Vec<_> = (0..2)
        .map(|i| {
            Command::new(support::durus_python())
                .arg("-c")
                .arg(format!("{PY_MODEL}{PY_WORKER}"))
                .args([
                    port.clone(),
                    i.to_string(),
                    rounds.to_string(),
                    format!("{start_at:.6}"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start python worker")
        })
        .collect();
    let rust = run_workers(&address, Variant::Merging, 3, 300, Some(oid.0), start_at);
    for p in python {
        let out = p.wait_with_output().expect("python worker");
        assert!(
            out.status.success(),
            "python worker failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for r in &rust {
        assert_eq!(r.int("ok"), 300);
        assert_eq!(r.int("conflicts"), 0);
    }
    let value =
        counters::counter_value_at::<Model>(&address, Variant::Merging, oid).expect("value");
    assert_eq!(value, 900, "every Rust increment was kept");
    let out = support::run_python(
        &format!("{PY_MODEL}{PY_CHECK}"),
        &[&port, &rounds.to_string()],
    );
    assert_eq!(out.trim(), "ok", "every Python increment was kept");
    assert!(server.stop());
}

/// Runs `durus bench ARGS` and returns its parsed `RESULT` line.
fn bench_result(args: &[&str]) -> serde_json::Value {
    durus_bench(args)
        .results
        .into_iter()
        .next()
        .expect("a RESULT line")
}

#[test]
fn short_bench_w4_and_w5_merge_runs_report_verified_results() {
    let scratch = support::Scratch::new("bench-runs");
    let db = scratch.path("w4.durus");
    let r = bench_result(&[
        "w4",
        "--c",
        "2",
        "--duration",
        "1",
        "--db",
        db.to_str().expect("path"),
    ]);
    assert_eq!(r["verified"], true);
    assert_eq!(r["workload"], "W4");
    assert_eq!(r["peer"], "durus-rs");
    assert_eq!(r["c"], 2);
    assert_eq!(r["conflicts"], 0);
    let per_client = r["per_client"].as_array().expect("per_client");
    assert_eq!(per_client.len(), 2);
    let sum: u64 = per_client.iter().filter_map(|v| v.as_u64()).sum();
    assert_eq!(r["commits"].as_u64(), Some(sum));
    assert!(sum > 0);
    assert!(r["server_rss_kb"].as_u64().is_some_and(|kb| kb > 0));
    assert!(r["fsync"].is_string());

    let db = scratch.path("w5.durus");
    let r = bench_result(&[
        "w5",
        "--c",
        "2",
        "--duration",
        "1",
        "--variant",
        "merge",
        "--db",
        db.to_str().expect("path"),
    ]);
    assert_eq!(r["verified"], true);
    assert_eq!(r["workload"], "W5");
    assert_eq!(r["variant"], "merge");
    assert_eq!(r["conflicts"], 0);
    assert_eq!(r["final_value"], r["increments"]);
    assert!(r["increments"].as_u64().is_some_and(|n| n > 0));
}

#[test]
fn short_bench_w4_and_w5_in_one_process_report_verified_results() {
    let scratch = support::Scratch::new("bench-emb-runs");
    for (mode, variant, fsync) in [
        ("w4", "abort-retry", "always"),
        ("w4", "abort-retry", "never"),
        ("w5", "merge", "never"),
    ] {
        let db = scratch.path(&format!("{mode}-{fsync}.durus"));
        let r = bench_result(&[
            mode,
            "--target",
            "emb",
            "--c",
            "3",
            "--duration",
            "0.5",
            "--variant",
            variant,
            "--fsync",
            fsync,
            "--db",
            db.to_str().expect("path"),
        ]);
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["target"], "emb");
        assert_eq!(r["fsync"], fsync);
        assert_eq!(r["conflicts"], 0);
        let per_client = r["per_client"].as_array().expect("per_client");
        assert_eq!(per_client.len(), 3);
        assert!(per_client.iter().all(|v| v.as_u64().is_some_and(|n| n > 0)));
        assert!(r["server_rss_kb"].is_null());
    }
}

#[test]
fn short_bench_w5_btree_sum_runs_verify_every_key_without_conflicts() {
    let scratch = support::Scratch::new("bench-btree-sum");
    for target in ["emb", "srv"] {
        let db = scratch.path(&format!("w5-{target}.durus"));
        let r = bench_result(&[
            "w5",
            "--target",
            target,
            "--c",
            "4",
            "--duration",
            "1",
            "--variant",
            "btree-sum",
            "--db",
            db.to_str().expect("path"),
        ]);
        assert_eq!(r["verified"], true, "every key holds its increments: {r}");
        assert_eq!(r["variant"], "btree-sum");
        assert_eq!(r["conflicts"], 0, "{r}");
        assert_eq!(r["final_value"], r["increments"]);
        assert!(r["merges"].as_u64().is_some_and(|n| n > 0), "{r}");
    }
    let db = scratch.path("w4.durus");
    let out = Command::new(DURUS)
        .args(["bench", "w4", "--c", "2", "--duration", "1"])
        .args(["--variant", "btree-sum", "--db"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("durus");
    assert!(!out.success(), "btree-sum is a W5 variant");
}
