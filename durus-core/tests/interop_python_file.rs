//! SHELF-1 files move both ways between our FileStorage and Python Durus 4.3:
//! every record reads back byte-identical on the other side, new oids come
//! out in the same order, and each side can pack or extend the other's file.

mod support;

use durus_core::internals::record;
use durus_core::storage::file::{self, FileOptions, FileStorage};
use durus_core::storage::NoConflicts;
use durus_core::{Oid, Storage};
use std::path::{Path, PathBuf};
use support::{run_python, Scratch};

/// Prints `oid-hex record-hex` for every record, sorted, as Python Durus reads the file.
const PY_DUMP: &str = r#"
import sys
from durus.file_storage import FileStorage
s = FileStorage(sys.argv[1], readonly=True)
for name in sorted(s.shelf):
    print(name.hex(), s.load(name).hex())
"#;

/// Asks Python Durus for `n` new oids and commits a record for each.
const PY_COMMIT: &str = r#"
import sys
from durus.file_storage import FileStorage
from durus.serialize import pack_record
s = FileStorage(sys.argv[1])
oids = [s.new_oid() for _ in range(int(sys.argv[2]))]
s.begin()
for oid in oids:
    s.store(oid, pack_record(oid, b"from python", b""))
s.end()
s.close()
print(" ".join(str(int.from_bytes(o, "big")) for o in oids))
"#;

const PY_PACK: &str = r#"
import sys
from durus.file_storage import FileStorage
s = FileStorage(sys.argv[1])
s.pack()
s.close()
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn our_dump(path: &Path) -> String {
    let fs =
        FileStorage::open_with(path, FileOptions::new().read_only(true)).expect("open read-only");
    let mut lines: Vec<String> = fs
        .records()
        .expect("records")
        .map(|r| {
            let (oid, rec) = r.expect("record");
            format!("{} {}", hex(&oid.to_bytes()), hex(&rec))
        })
        .collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn python_dump(path: &Path) -> String {
    run_python(PY_DUMP, &[path.to_str().expect("utf-8 path")])
}

fn commit(fs: &mut FileStorage, records: &[(Oid, &[u8], &[Oid])]) {
    let records = records
        .iter()
        .map(|(oid, data, refs)| (*oid, support::rec(*oid, data, refs)))
        .collect();
    support::commit(fs, records);
}

/// A file with a packed base (holes included) and later transactions.
fn build_ours(path: &Path) {
    let mut fs = FileStorage::open(path).expect("open");
    let oids: Vec<Oid> = (0..12).map(|_| fs.new_oid().expect("oid")).collect();
    assert_eq!(oids[0], Oid::ROOT);
    // The root refers to the odd oids; the even ones (but the root) are garbage.
    let odd: Vec<Oid> = oids.iter().copied().filter(|o| o.0 % 2 == 1).collect();
    commit(&mut fs, &[(Oid::ROOT, b"root", &odd)]);
    let rest: Vec<(Oid, Vec<u8>)> = oids[1..]
        .iter()
        .map(|o| (*o, format!("object {o}").into_bytes()))
        .collect();
    let recs: Vec<(Oid, &[u8], &[Oid])> = rest.iter().map(|(o, d)| (*o, &d[..], &[][..])).collect();
    commit(&mut fs, &recs);
    fs.pack().expect("pack");
    let removed = fs.sync().expect("sync");
    assert_eq!(removed, vec![Oid(2), Oid(4), Oid(6), Oid(8), Oid(10)]);
    // Later transactions: a changed object and two new ones from the holes.
    let a = fs.new_oid().expect("oid");
    let b = fs.new_oid().expect("oid");
    let mut refs = odd.clone();
    refs.extend([a, b]);
    commit(
        &mut fs,
        &[
            (a, b"new a", &[b]),
            (b, b"new b", &[]),
            (Oid::ROOT, b"root 2", &refs),
        ],
    );
    commit(&mut fs, &[(Oid(3), &[7u8; 5000], &[Oid(5)])]);
}

#[test]
fn python_reads_every_record_we_write() {
    let dir = Scratch::new("interop-ours");
    let path = dir.path("ours.durus");
    build_ours(&path);
    let ours = our_dump(&path);
    assert_eq!(ours.lines().count(), 9);
    assert_eq!(python_dump(&path), ours);
    assert!(file::verify(&path).expect("verify").is_ok());
}

#[test]
fn new_oids_come_out_in_durus_order() {
    let dir = Scratch::new("interop-oids");
    let ours_path = dir.path("a.durus");
    build_ours(&ours_path);
    let py_path = dir.path("b.durus");
    std::fs::copy(&ours_path, &py_path).expect("copy");
    let from_python = run_python(PY_COMMIT, &[py_path.to_str().expect("utf-8"), "6"]);
    let mut fs = FileStorage::open(&ours_path).expect("open");
    let from_us: Vec<String> = (0..6)
        .map(|_| fs.new_oid().expect("oid").to_string())
        .collect();
    assert_eq!(from_python.trim(), from_us.join(" "));
    // Python's commit on our file reads back in ours.
    drop(fs);
    let mut theirs = FileStorage::open(&py_path).expect("open python's commit");
    let first: u64 = from_python
        .split_whitespace()
        .next()
        .expect("an oid")
        .parse()
        .expect("number");
    let rec = theirs.load(Oid(first)).expect("load");
    assert_eq!(record::unpack(&rec).expect("framing").data, b"from python");
}

#[test]
fn python_packs_our_file_and_we_read_it() {
    let dir = Scratch::new("interop-py-pack");
    let path = dir.path("ours.durus");
    build_ours(&path);
    let before = our_dump(&path);
    run_python(PY_PACK, &[path.to_str().expect("utf-8")]);
    assert_eq!(our_dump(&path), before, "nothing reachable was lost");
    assert_eq!(python_dump(&path), before);
    assert!(file::verify(&path).expect("verify").is_ok());
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check_python_file(name: &str) {
    let dir = Scratch::new("interop-fixture");
    let path = dir.path(name);
    std::fs::copy(fixture(name), &path).expect("copy fixture");
    let expected = python_dump(&path);
    assert!(expected.lines().count() > 3);
    assert_eq!(our_dump(&path), expected);
    let report = file::verify(&path).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);

    // We extend Python's file; Python reads the result.
    let mut fs = FileStorage::open(&path).expect("open");
    let fresh = fs.new_oid().expect("oid");
    let root = fs.load(Oid::ROOT).expect("root");
    fs.begin();
    fs.store(fresh, record::pack(fresh, b"from rust", &[]).expect("pack"))
        .expect("store");
    fs.store(Oid::ROOT, root).expect("store");
    fs.end(&mut NoConflicts)
        .expect("end")
        .wait()
        .expect("durable");
    drop(fs);
    let after = python_dump(&path);
    assert_eq!(our_dump(&path), after);
    assert!(after.contains(&hex(&record::pack(fresh, b"from rust", &[]).expect("pack"))));

    // Our pack of Python's file keeps what the root reaches, for Python too.
    let mut fs = FileStorage::open(&path).expect("open");
    fs.pack().expect("pack");
    drop(fs);
    let packed = python_dump(&path);
    assert_eq!(our_dump(&path), packed);
    assert!(
        !packed.contains(&hex(&fresh.to_bytes())),
        "the unreferenced record is gone"
    );
}

#[test]
fn we_read_and_extend_an_unpacked_python_file() {
    check_python_file("python_unpacked.durus");
}

#[test]
fn we_read_and_extend_a_packed_python_file_with_later_transactions() {
    check_python_file("python_packed.durus");
}

#[test]
fn python_reads_a_file_packed_while_commits_went_on() {
    let dir = Scratch::new("interop-online-pack");
    let path = dir.path("ours.durus");
    build_ours(&path);
    let mut fs =
        FileStorage::open_with(&path, FileOptions::new().pack_step_records(2)).expect("open");
    assert!(!fs.pack_step().expect("first step"));
    // Between steps: a new object hung from an already copied one, and a
    // change to one not copied yet.
    let fresh = fs.new_oid().expect("oid");
    let root = record::unpack(&fs.load(Oid::ROOT).expect("root"))
        .expect("framing")
        .ref_oids()
        .chain([fresh])
        .collect::<Vec<_>>();
    commit(
        &mut fs,
        &[
            (fresh, b"during the pack", &[]),
            (Oid::ROOT, b"root 3", &root),
            (Oid(11), b"changed during the pack", &[]),
        ],
    );
    let mut steps = 1;
    while !fs.pack_step().expect("step") {
        steps += 1;
        assert!(steps < 100);
    }
    assert!(steps > 2, "{steps} steps");
    drop(fs);
    let ours = our_dump(&path);
    assert!(ours.contains(&hex(b"during the pack")));
    assert!(ours.contains(&hex(b"changed during the pack")));
    assert_eq!(python_dump(&path), ours);
    assert!(file::verify(&path).expect("verify").is_ok());
}
