//! `durus convert` between a file and PostgreSQL (both ways, oids and
//! records kept, a non-empty destination refused), and `durus census`,
//! `show`, `referrers`, `verify` and `pack` on a PostgreSQL URL.

mod support;

use durus_core::storage::{FileOptions, FileStorage, Storage};
use durus_core::{Connection, Oid, PRef, Persistent, PgStorage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use support::durus::DURUS;
use support::{pg, Scratch};

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "pgtools.Library")]
struct Library {
    books: Vec<PRef<Book>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "pgtools.Book")]
struct Book {
    title: String,
}

fn run(args: &[&str]) -> Output {
    Command::new(DURUS).args(args).output().expect("run durus")
}

fn durus(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "durus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file with a library of three books and one book no longer reachable
/// (its record is still in the file). Returns the oids of the books kept.
fn make_file(path: &Path) -> Vec<Oid> {
    let conn = Connection::new(FileStorage::open(path).expect("open file"));
    let root: PRef<Library> = conn.root().expect("root");
    for title in ["Dune", "Emma", "Ulysses", "Gone"] {
        root.write().expect("write").books.push(PRef::new(Book {
            title: title.to_string(),
        }));
    }
    conn.commit().expect("commit");
    root.write().expect("write").books.pop();
    conn.commit().expect("commit");
    let books = root.read().expect("read").books.clone();
    books.iter().map(|b| b.oid().expect("oid")).collect()
}

fn file_records(path: &Path) -> BTreeMap<Oid, Vec<u8>> {
    let storage = FileStorage::open_with(path, FileOptions::new().read_only(true)).expect("open");
    storage
        .records()
        .expect("records")
        .map(|r| r.expect("record"))
        .collect()
}

fn pg_records(url: &str) -> BTreeMap<Oid, Vec<u8>> {
    let mut storage = PgStorage::connect(url).expect("connect");
    let rows = storage.records_after(None, 1_000_000).expect("rows");
    rows.into_iter().map(|(oid, rec, _)| (oid, rec)).collect()
}

#[test]
fn convert_file_to_postgres_to_file_keeps_every_record() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let scratch = Scratch::new("pg-convert");
    let (src, back) = (scratch.path("src.durus"), scratch.path("back.durus"));
    let books = make_file(&src);
    let original = file_records(&src);
    assert_eq!(original.len(), 5, "the root, four books (one unreachable)");
    let url = cluster.new_database("convert");

    let out = durus(&["convert", src.to_str().unwrap(), &url]);
    assert!(out.contains("copied 5 records"), "{out}");
    assert_eq!(pg_records(&url), original);

    let out = durus(&["convert", &url, back.to_str().unwrap()]);
    assert!(out.contains("copied 5 records"), "{out}");
    assert_eq!(file_records(&back), original);

    // A non-empty destination is refused, both ways, and left as it was.
    let refused = run(&["convert", src.to_str().unwrap(), &url]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("holds records"), "{stderr}");
    let refused = run(&["convert", &url, back.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert_eq!(pg_records(&url), original);
    assert_eq!(file_records(&back), original);

    // The converted databases work, and new objects get new oids.
    let max = *original.keys().next_back().expect("records");
    let conn = Connection::new(PgStorage::connect(&url).expect("connect"));
    let root: PRef<Library> = conn.root().expect("root");
    assert_eq!(root.read().expect("read").books.len(), 3);
    let added = PRef::new(Book {
        title: "Persuasion".into(),
    });
    root.write().expect("write").books.push(added.clone());
    conn.commit().expect("commit on PostgreSQL");
    assert!(added.oid().expect("oid") > max);
    let first: PRef<Book> = conn.get(books[0]).expect("get");
    assert_eq!(first.read().expect("read").title, "Dune");
}

#[test]
fn census_show_referrers_verify_and_pack_on_postgres() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let scratch = Scratch::new("pg-tools");
    let src = scratch.path("src.durus");
    let books = make_file(&src);
    let url = cluster.new_database("tools");
    durus(&["convert", src.to_str().unwrap(), &url]);

    let census = durus(&["census", &url]);
    assert!(
        census
            .lines()
            .any(|l| l.contains("pgtools.Book") && l.split_whitespace().next() == Some("3")),
        "{census}"
    );
    let shown = durus(&["show", &books[0].0.to_string(), &url]);
    assert!(shown.contains("Dune"), "{shown}");
    let referrers = durus(&["referrers", &books[1].0.to_string(), &url]);
    assert_eq!(referrers.trim(), "0");

    let verified = durus(&["verify", &url]);
    assert!(
        verified.contains("5 records, 4 reachable from the root, 1 unreachable"),
        "{verified}"
    );
    assert!(verified.trim_end().ends_with("ok"), "{verified}");

    durus(&["pack", &url]);
    assert_eq!(pg_records(&url).len(), 4);
    let verified = durus(&["verify", &url]);
    assert!(
        verified.contains("4 records, 4 reachable from the root, 0 unreachable"),
        "{verified}"
    );

    // A dangling reference is a problem.
    let mut storage = PgStorage::connect(&url).expect("connect");
    let stray = Oid(1_000_000);
    support::commit(
        &mut storage,
        vec![(stray, support::rec(stray, b"x", &[Oid(2_000_000)]))],
    );
    storage.close().expect("close");
    let out = run(&["verify", &url]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("oid 1000000 refers to oid 2000000, which has no record")
            && stdout.contains("NOT OK"),
        "{stdout}"
    );
}

#[test]
fn repair_refuses_a_postgres_url() {
    let out = run(&["repair", "postgresql://127.0.0.1:1/nothing"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("repair works on a storage file"),
        "{stderr}"
    );
}
