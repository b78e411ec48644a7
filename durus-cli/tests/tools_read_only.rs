//! Tools that read a database never create one, and never report damage
//! they cannot tell from a writer at work: a missing path is an error that
//! names it (with a hint when it looks like HOST:PORT), `verify` on a file
//! a writer holds checks up to its last complete transaction, `repair`
//! checks the lock before it says what it would cut, and `--help` offers
//! only what works.

mod support;

use durus_core::{Connection, FileStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::process::{Command, Output};
use support::durus::DURUS;

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Notes {
    lines: Vec<String>,
}

fn run(args: &[&str]) -> Output {
    Command::new(DURUS).args(args).output().expect("run durus")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file with a few commits.
fn notes_file(dir: &support::Scratch, name: &str) -> std::path::PathBuf {
    let path = dir.path(name);
    let conn = Connection::open(&path).expect("open");
    let root: PRef<Notes> = conn.root().expect("root");
    for n in 0..3 {
        root.write().expect("write").lines.push(format!("line {n}"));
        conn.commit().expect("commit");
    }
    path
}

#[test]
fn tools_refuse_a_missing_path_and_create_nothing() {
    let dir = support::Scratch::new("tools-missing");
    let missing = dir.path("missing.durus");
    let m = missing.to_str().expect("utf-8");
    let cases: [&[&str]; 6] = [
        &["census", m],
        &["show", "0", m],
        &["referrers", "0", m],
        &["verify", m],
        &["pack", m],
        &["repair", m],
    ];
    for args in cases {
        let out = run(args);
        let (_, err) = text(&out);
        assert!(!out.status.success(), "durus {args:?} succeeded");
        assert!(
            err.contains(m) && err.contains("no such file"),
            "{args:?}: {err}"
        );
        assert!(!missing.exists(), "durus {args:?} created {m}");
        assert!(!dir.path("missing.durus.prepack").exists());
    }
}

#[test]
fn an_address_given_as_a_path_gets_a_hint() {
    let dir = support::Scratch::new("tools-hint");
    let out = Command::new(DURUS)
        .args(["census", "127.0.0.1:29724"])
        .current_dir(&dir.0)
        .output()
        .expect("run durus");
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("--host 127.0.0.1 --port 29724"), "{err}");
    assert!(!dir.path("127.0.0.1:29724").exists());
}

/// Appends half a transaction, as a writer at work leaves the file for a
/// moment.
fn append_half_a_transaction(path: &std::path::Path) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(&[0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        .expect("append");
}

#[test]
fn verify_tells_a_writer_at_work_from_a_torn_file() {
    let dir = support::Scratch::new("tools-verify-writer");
    let path = notes_file(&dir, "busy.durus");
    let p = path.to_str().expect("utf-8");
    {
        // A writer holds the lock while its last transaction is half on disk.
        let _writer = FileStorage::open(&path).expect("writer");
        append_half_a_transaction(&path);
        let out = run(&["verify", p]);
        let (said, err) = text(&out);
        assert!(out.status.success(), "{said}{err}");
        assert!(said.contains("writer") && said.ends_with("ok\n"), "{said}");

        // repair checks the lock before it says anything about cutting.
        let out = run(&["repair", p]);
        let (said, err) = text(&out);
        assert!(!out.status.success());
        assert!(!said.contains("cutting"), "{said}");
        assert!(err.contains("locked"), "{err}");
    }
    // No writer: the same bytes are a torn file, and the fix is named.
    let out = run(&["verify", p]);
    let (said, _) = text(&out);
    assert!(!out.status.success());
    assert!(
        said.contains("torn last transaction") && said.contains("NOT OK"),
        "{said}"
    );
    assert!(said.contains(&format!("durus repair {p}")), "{said}");
}

#[test]
fn help_offers_only_what_works() {
    for tool in ["verify", "repair"] {
        let (help, _) = text(&run(&[tool, "--help"]));
        assert!(
            !help.contains("--host") && !help.contains("--port"),
            "{tool}: {help}"
        );
    }
    let (help, _) = text(&run(&["census", "--help"]));
    assert!(help.contains("--host"), "{help}");
}

#[test]
fn verify_on_a_file_a_server_is_writing_never_says_not_ok() {
    let dir = support::Scratch::new("tools-verify-serve");
    let path = notes_file(&dir, "served.durus");
    let p = path.to_str().expect("utf-8").to_string();
    let mut server = support::durus::ChildServer::start(&[&p, "--fsync", "never"]);
    let address = server.address.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let conn = Connection::connect(&address).expect("connect");
            let root: PRef<Notes> = conn.root().expect("root");
            for n in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let mut notes = root.write().expect("write");
                notes.lines.clear();
                notes.lines.push("x".repeat(2000 + n % 1000));
                drop(notes);
                conn.commit().expect("commit");
            }
        })
    };
    for _ in 0..60 {
        let out = run(&["verify", &p]);
        let (said, err) = text(&out);
        assert!(out.status.success(), "{said}{err}");
        assert!(said.ends_with("ok\n"), "{said}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.join().expect("writer");
    assert!(server.stop());
}

#[test]
fn pack_says_what_it_did_and_where_the_old_file_is() {
    let dir = support::Scratch::new("tools-pack-says");
    let path = notes_file(&dir, "packed.durus");
    let p = path.to_str().expect("utf-8");
    let out = run(&["pack", p]);
    let (said, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        said.contains(&format!("packed {p}")) && said.contains("bytes before"),
        "{said}"
    );
    let prepack = format!("{p}.prepack");
    assert!(said.contains(&prepack), "{said}");
    assert!(std::path::Path::new(&prepack).exists());
}
