//! The item workloads of `durus bench` (W1, W2, W3, W6, W7) at a tiny
//! size, through the `durus` binary: each prints one `RESULT` line with
//! the peer's fields, and every workload that checks its result says
//! `verified: true`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::durus::{durus_bench, DURUS};
const N: u64 = 2000;
const K: u64 = 500;

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("durus-bench-items-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `durus bench ARGS`, checks it succeeded and returns its result.
fn bench(args: &[&str]) -> serde_json::Value {
    let run = durus_bench(args);
    assert!(
        run.stderr.contains("fsync"),
        "the run says its fsync policy: {}",
        run.stderr
    );
    assert_eq!(run.results.len(), 1, "one RESULT line: {}", run.stdout);
    let rec = run.results.into_iter().next().expect("RESULT json");
    assert_eq!(rec["peer"], "durus-rs");
    assert!(rec.get("fsync").is_some());
    rec
}

fn int(rec: &serde_json::Value, key: &str) -> u64 {
    rec[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {rec}"))
}

fn positive(rec: &serde_json::Value, key: &str) -> f64 {
    let v = rec[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {rec}"));
    assert!(v > 0.0, "{key} > 0 in {rec}");
    v
}

#[test]
fn w1_w2_w7_embedded_insert_read_and_pack_verify() {
    let s = Scratch::new("emb");
    let db = s.path("w1e.durus");
    let n = N.to_string();
    let w1 = bench(&[
        "w1", "--target", "emb", "--n", &n, "--batch", "300", "--db", &db,
    ]);
    assert_eq!(w1["workload"], "W1");
    assert_eq!(w1["fsync"], "never");
    assert_eq!(int(&w1, "commits"), N.div_ceil(300));
    positive(&w1, "objs_per_s");
    assert_eq!(
        int(&w1, "file_size"),
        std::fs::metadata(&db).expect("file").len()
    );
    assert!(w1["server_rss_kb"].is_null());

    let w2 = bench(&["w2", "--target", "emb", "--n", &n, "--db", &db]);
    assert_eq!(w2["verified"], true);
    assert_eq!(int(&w2, "count"), N);
    positive(&w2, "open_s");

    // W3 on the file opened in this process: no server, no round trip.
    let k = (N / 2).to_string();
    let w3 = bench(&["w3", "--target", "emb", "--n", &n, "--k", &k, "--db", &db]);
    assert_eq!(w3["verified"], true);
    assert_eq!(w3["target"], "emb");
    positive(&w3, "loads_per_s");
    assert!(w3["server_rss_kb"].is_null());
    assert!(w3["sync_rt_p50_us"].is_null());

    // Told the wrong N, W2 fails its check and says so.
    let out = Command::new(DURUS)
        .args(["bench", "w2", "--target", "emb", "--n", "2001", "--db", &db])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"verified\": false"));

    let copy = s.path("w7.durus");
    let w7 = bench(&[
        "w7", "--src", &db, "--db", &copy, "--n", &n, "--batch", "100",
    ]);
    assert_eq!(w7["verified"], true);
    assert_eq!(int(&w7, "deleted"), N / 2);
    assert_eq!(int(&w7, "items_after"), N / 2);
    assert!(int(&w7, "size_after") < int(&w7, "size_before"));
    assert!(!Path::new(&copy).exists(), "W7 removes its copy");
    assert!(Path::new(&db).exists(), "W7 leaves its source");
}

#[test]
fn w1_w2_w3_through_a_server_child_verify() {
    let s = Scratch::new("srv");
    let db = s.path("w1s.durus");
    let n = N.to_string();
    let k = K.to_string();
    let w1 = bench(&[
        "w1", "--target", "srv", "--n", &n, "--db", &db, "--fsync", "always",
    ]);
    assert_eq!(w1["fsync"], "always");
    assert_eq!(int(&w1, "commits"), 2);
    assert!(int(&w1, "server_rss_kb") > 0);

    let w2 = bench(&["w2", "--target", "srv", "--n", &n, "--db", &db]);
    assert_eq!(w2["verified"], true);
    assert!(int(&w2, "server_rss_kb") > 0);

    let w3 = bench(&["w3", "--n", &n, "--k", &k, "--db", &db]);
    assert_eq!(w3["verified"], true);
    assert_eq!(int(&w3, "k"), K);
    // Distinct items, a cache of 100: one load from the server per op.
    let per_op = w3["storage_loads_per_op"].as_f64().expect("loads per op");
    assert!((0.99..=1.01).contains(&per_op), "{w3}");
    let p50 = positive(&w3, "p50_us");
    assert!(p50 <= positive(&w3, "p99_us"));
    assert!(int(&w3, "server_rss_kb") > 0);
}

#[test]
fn w6_build_open_pack_open_verify() {
    let s = Scratch::new("w6");
    let db = s.path("w6.durus");
    let n = N.to_string();
    let build = bench(&["w6build", "--n", &n, "--batch", "1000", "--db", &db]);
    assert_eq!(build["workload"], "W6build");
    assert_eq!(int(&build, "commits"), 2);
    let open = bench(&["w6open", "--db", &db, "--n", &n, "--variant", "unpacked"]);
    assert_eq!(open["verified"], true);
    positive(&open, "open_s");
    assert!(int(&open, "rss_after_open_kb") > 0);
    let pack = bench(&["w6pack", "--db", &db, "--n", &n]);
    assert_eq!(pack["workload"], "W6pack");
    positive(&pack, "pack_s");
    let packed = bench(&["w6open", "--db", &db, "--n", &n, "--variant", "packed"]);
    assert_eq!(packed["verified"], true);
    assert_eq!(packed["variant"], "packed");
}

#[test]
fn bad_parameters_are_errors_not_panics() {
    let s = Scratch::new("bad");
    let db = s.path("none.durus");
    for args in [
        vec!["w1", "--target", "emb", "--n", "0", "--db", db.as_str()],
        vec!["w3", "--n", "10", "--k", "11", "--db", db.as_str()],
        vec![
            "w6open",
            "--n",
            "10",
            "--variant",
            "packed",
            "--db",
            db.as_str(),
        ],
        vec!["w7", "--src", db.as_str(), "--db", db.as_str(), "--n", "10"],
    ] {
        let out = Command::new(DURUS)
            .arg("bench")
            .args(&args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
