//! `durus bench` W1-W5 on a PostgreSQL database (`--storage URL`), in
//! this process (`emb`) and through a `durus serve --storage URL` child
//! (`srv`), at a tiny size: every run verifies, W1 starts from an empty
//! database each time (the durus tables dropped), and W3 reports the bare
//! `SELECT` beside its loads.

mod support;

use support::durus::{durus_bench, DURUS};
use support::pg;

/// Runs `durus bench ARGS` and returns its one result line.
fn bench(args: &[&str]) -> serde_json::Value {
    let mut run = durus_bench(args);
    assert_eq!(run.results.len(), 1, "{}", run.stdout);
    run.results.remove(0)
}

fn rows(url: &str) -> i64 {
    let mut client = pg::Cluster::client(url);
    client
        .query_one("SELECT count(*) FROM durus_object", &[])
        .expect("count rows")
        .get(0)
}

#[test]
fn bench_w1_to_w5_on_postgres_verify() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let url = cluster.new_database("bench");
    for target in ["emb", "srv"] {
        let mut counts = Vec::new();
        for _ in 0..2 {
            let r = bench(&[
                "w1",
                "--target",
                target,
                "--n",
                "300",
                "--batch",
                "100",
                "--storage",
                &url,
            ]);
            assert_eq!(r["storage"], "postgresql", "{r}");
            assert_eq!(r["commits"], 3, "{r}");
            counts.push(rows(&url));
        }
        assert_eq!(counts[0], counts[1], "W1 starts from an empty database");
        assert!(counts[0] > 300, "items, parent, root and nodes: {counts:?}");

        let r = bench(&["w2", "--target", target, "--n", "300", "--storage", &url]);
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["count"], 300, "{r}");

        let r = bench(&[
            "w3",
            "--target",
            target,
            "--n",
            "300",
            "--k",
            "50",
            "--storage",
            &url,
        ]);
        assert_eq!(r["verified"], true, "{r}");
        assert!(r["bare_select_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");

        let r = bench(&[
            "w4",
            "--target",
            target,
            "--c",
            "2",
            "--duration",
            "0.5",
            "--storage",
            &url,
        ]);
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["storage"], "postgresql", "{r}");

        let r = bench(&[
            "w5",
            "--target",
            target,
            "--c",
            "2",
            "--duration",
            "0.5",
            "--variant",
            "merge",
            "--storage",
            &url,
        ]);
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["conflicts"], 0, "merged, never retried: {r}");
    }
}

#[test]
fn bench_refuses_two_storages_and_postgres_for_file_workloads() {
    let out = std::process::Command::new(DURUS)
        .args([
            "bench",
            "w1",
            "--target",
            "emb",
            "--n",
            "10",
            "--db",
            "x.durus",
            "--storage",
            "postgresql://nobody@127.0.0.1:1/none",
        ])
        .output()
        .expect("run durus");
    assert!(!out.status.success());
    let out = std::process::Command::new(DURUS)
        .args([
            "bench",
            "w6pack",
            "--n",
            "10",
            "--storage",
            "postgresql://nobody@127.0.0.1:1/none",
        ])
        .output()
        .expect("run durus");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("file only"), "{err}");
}
