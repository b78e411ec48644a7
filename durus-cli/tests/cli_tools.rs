//! The `durus` command against a running server: census, show, referrers,
//! pack and stop.

mod support;

use durus_core::{Connection, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::process::Command;
use support::durus::{ChildServer, DURUS};

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "cli.Library")]
struct Library {
    books: Vec<PRef<Book>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "cli.Book")]
struct Book {
    title: String,
    pages: u32,
}

fn durus(args: &[&str]) -> String {
    let out = Command::new(DURUS).args(args).output().expect("run durus");
    assert!(
        out.status.success(),
        "durus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn census_show_referrers_pack_and_stop_over_a_server() {
    let mut server = ChildServer::start(&[]);
    let port = server.port.to_string();
    let conn = Connection::connect(&server.address).expect("connect");
    let root: PRef<Library> = conn.root().expect("root");
    for (i, title) in ["Dune", "Emma", "Ulysses"].iter().enumerate() {
        root.write().expect("write").books.push(PRef::new(Book {
            title: title.to_string(),
            pages: 100 * (i as u32 + 1),
        }));
    }
    conn.commit().expect("commit");
    let dune = root.read().expect("read").books[0].oid().expect("oid");

    let census = durus(&["census", "--port", &port]);
    assert!(
        census
            .lines()
            .any(|l| l.contains("cli.Book") && l.split_whitespace().next() == Some("3")),
        "{census}"
    );
    assert!(
        census.lines().any(|l| l.contains("cli.Library")),
        "{census}"
    );

    let shown: serde_json::Value =
        serde_json::from_str(&durus(&["show", "0", "--port", &port])).expect("json");
    assert_eq!(shown["class"], "cli.Library");
    assert_eq!(shown["state"]["books"][0]["$ref"], dune.0);
    let book: serde_json::Value =
        serde_json::from_str(&durus(&["show", &dune.0.to_string(), "--port", &port]))
            .expect("json");
    assert_eq!(book["state"]["title"], "Dune");
    assert_eq!(book["state"]["pages"], 100);

    let referrers = durus(&["referrers", &dune.0.to_string(), "--port", &port]);
    assert_eq!(referrers.trim(), "0");

    // Drop a book, pack through the command, and the census follows.
    root.write().expect("write").books.pop();
    conn.commit().expect("commit");
    drop(conn);
    durus(&["pack", "--port", &port]);
    let census = durus(&["census", "--port", &port]);
    assert!(
        census
            .lines()
            .any(|l| l.contains("cli.Book") && l.split_whitespace().next() == Some("2")),
        "{census}"
    );

    durus(&["stop", "--port", &port]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.child.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "server did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(server.stop());
}

#[test]
fn show_names_python_records_instead_of_failing() {
    let mut server = ChildServer::start(&[]);
    let port = server.port.to_string();
    support::run_python(
        "import sys\nfrom durus.client_storage import ClientStorage\nfrom durus.connection import Connection\n\
         c = Connection(ClientStorage(host='127.0.0.1', port=int(sys.argv[1])))\n\
         c.get_root()['x'] = 1\nc.commit()\n",
        &[&port],
    );
    let shown: serde_json::Value =
        serde_json::from_str(&durus(&["show", "0", "--port", &port])).expect("json");
    assert_eq!(shown["class"], "durus.persistent_dict.PersistentDict");
    assert_eq!(shown["python_pickle"], true);
    let census = durus(&["census", "--port", &port]);
    assert!(
        census.contains("durus.persistent_dict.PersistentDict"),
        "{census}"
    );
    assert!(server.stop());
}

#[test]
fn verify_and_repair_a_file_with_a_torn_tail() {
    let dir = support::Scratch::new("cli-repair");
    let path = dir.path("torn.durus");
    {
        let conn = Connection::open(&path).expect("open");
        let lib: PRef<Library> = conn.root().expect("root");
        for pages in 0..3 {
            lib.write().expect("write").books.push(PRef::new(Book {
                title: format!("volume {pages}"),
                pages,
            }));
            conn.commit().expect("commit");
        }
    }
    let file = path.to_str().expect("utf-8 path");
    assert!(durus(&["verify", "--file", file]).ends_with("ok\n"));
    let len = std::fs::metadata(&path).expect("stat").len();
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..(len - 3) as usize]).expect("tear the tail");

    let out = Command::new(DURUS)
        .args(["verify", "--file", file])
        .output()
        .expect("run durus");
    assert!(!out.status.success(), "verify accepted a torn file");
    assert!(String::from_utf8_lossy(&out.stdout).contains("torn last transaction"));

    let said = durus(&["repair", "--file", file]);
    assert!(said.contains("cutting"), "{said}");
    assert!(durus(&["verify", "--file", file]).ends_with("ok\n"));
    // The file may also be given as a positional argument.
    assert!(durus(&["verify", file]).ends_with("ok\n"));
    assert!(durus(&["repair", file]).contains("nothing to cut"));
    let conn = Connection::open(&path).expect("reopen");
    let lib: PRef<Library> = conn.root().expect("root");
    assert_eq!(
        lib.read().expect("read").books.len(),
        2,
        "the last commit was cut"
    );
}
