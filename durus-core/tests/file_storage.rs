//! FileStorage behaviours (the conformance suite runs in conformance.rs): reopening, the lock and
//! read-only mode, oid allocation, pack (alone and while committing through
//! the hub), iteration and verify.

mod support;

use durus_core::error::StorageError;
use durus_core::storage::file::{self, FileOptions, FsyncPolicy};
use durus_core::storage::NoConflicts;
use durus_core::{Connection, Error, FileStorage, Hub, Oid, PRef, Persistent, Storage};
use serde::{Deserialize, Serialize};
use std::path::Path;
use support::{commit, rec, Scratch};

#[test]
fn new_file_is_an_empty_durus_shelf() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-empty");
    let path = dir.path("a.durus");
    drop(FileStorage::open(&path)?);
    let mut expected = b"SHELF-1\n".to_vec();
    for n in [0u64, 16, 1, 0] {
        expected.extend_from_slice(&n.to_be_bytes());
    }
    assert_eq!(std::fs::read(&path).expect("read"), expected);
    // A creation cut short is finished by the next open.
    std::fs::write(&path, &expected[..13]).expect("cut");
    drop(FileStorage::open(&path)?);
    assert_eq!(std::fs::read(&path).expect("read"), expected);
    Ok(())
}

#[test]
fn commits_survive_reopen() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-reopen");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open(&path)?;
    let a = fs.new_oid()?;
    let b = fs.new_oid()?;
    commit(
        &mut fs,
        vec![(a, rec(a, b"one", &[b])), (b, rec(b, b"two", &[]))],
    );
    commit(&mut fs, vec![(b, rec(b, b"two again", &[]))]);
    drop(fs);
    let mut fs = FileStorage::open(&path)?;
    assert_eq!(fs.load(a)?, rec(a, b"one", &[b]));
    assert_eq!(fs.load(b)?, rec(b, b"two again", &[]));
    assert!(matches!(fs.load(Oid(99)), Err(Error::NotFound(Oid(99)))));
    assert_eq!(fs.oids()?, vec![a, b]);
    Ok(())
}

#[test]
fn second_writer_is_refused_and_read_only_refuses_writes() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-lock");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open(&path)?;
    let root = fs.new_oid()?;
    commit(&mut fs, vec![(root, rec(root, b"root", &[]))]);
    match FileStorage::open(&path) {
        Err(Error::Storage(StorageError::Locked(p))) => assert!(p.ends_with("a.durus")),
        other => panic!("expected a lock error, got {other:?}"),
    }
    let mut reader = FileStorage::open_with(&path, FileOptions::new().read_only(true))?;
    assert_eq!(reader.load(root)?, rec(root, b"root", &[]));
    assert!(matches!(
        reader.new_oid(),
        Err(Error::Storage(StorageError::ReadOnly(_)))
    ));
    reader.begin();
    reader.store(root, rec(root, b"x", &[]))?;
    assert!(matches!(
        reader.end(&mut NoConflicts),
        Err(Error::Storage(StorageError::ReadOnly(_)))
    ));
    assert!(reader.pack().is_err());
    drop(fs);
    drop(FileStorage::open(&path)?);
    Ok(())
}

#[test]
fn surprise_oids_and_malformed_records_are_refused() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-surprise");
    let mut fs = FileStorage::open(dir.path("a.durus"))?;
    fs.begin();
    assert!(fs.store(Oid(5), rec(Oid(5), b"x", &[])).is_err());
    let root = fs.new_oid()?;
    assert!(
        fs.store(root, rec(Oid(9), b"x", &[])).is_err(),
        "record of another oid"
    );
    assert!(fs.store(root, vec![0; 5]).is_err(), "bad framing");
    Ok(())
}

#[test]
fn new_oids_fill_holes_first_and_never_repeat() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-oids");
    let mut fs = FileStorage::open(dir.path("a.durus"))?;
    let oids: Vec<Oid> = (0..10).map(|_| fs.new_oid()).collect::<Result<_, _>>()?;
    assert_eq!(oids, (0..10).map(Oid).collect::<Vec<_>>());
    // The root keeps 3 and 7; the rest is garbage.
    let mut records = vec![(Oid::ROOT, rec(Oid::ROOT, b"root", &[Oid(3), Oid(7)]))];
    records.extend(oids[1..].iter().map(|o| (*o, rec(*o, b"x", &[]))));
    commit(&mut fs, records);
    fs.pack()?;
    let removed = fs.sync()?;
    assert_eq!(removed, [1, 2, 4, 5, 6, 8, 9].map(Oid).to_vec());
    // The new map has 9 words (oids 0..=8); its holes, in Durus's order,
    // run down from 6 and end with the last word; then oids grow from 9.
    let next: Vec<u64> = (0..8)
        .map(|_| fs.new_oid().map(|o| o.0))
        .collect::<Result<_, _>>()?;
    assert_eq!(next, vec![6, 5, 4, 2, 1, 8, 9, 10]);
    // Oids committed later are skipped even where the map has holes.
    drop(fs);
    let mut fs = FileStorage::open(dir.path("a.durus"))?;
    let a = fs.new_oid()?;
    assert_eq!(a, Oid(6));
    commit(&mut fs, vec![(a, rec(a, b"a", &[]))]);
    drop(fs);
    let mut fs = FileStorage::open(dir.path("a.durus"))?;
    assert_eq!(fs.new_oid()?, Oid(5));
    Ok(())
}

#[test]
fn pack_keeps_what_the_root_reaches_and_keeps_a_prepack() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-pack");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open(&path)?;
    let oids: Vec<Oid> = (0..200).map(|_| fs.new_oid()).collect::<Result<_, _>>()?;
    // A chain root -> 1 -> 2 -> ... -> 99; 100..199 unreferenced.
    let mut records = vec![(Oid::ROOT, rec(Oid::ROOT, b"root", &[Oid(1)]))];
    for o in &oids[1..] {
        let refs: Vec<Oid> = if o.0 < 99 { vec![Oid(o.0 + 1)] } else { vec![] };
        records.push((*o, rec(*o, &[1u8; 100], &refs)));
    }
    commit(&mut fs, records);
    let before = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(fs.pack_progress(), None);
    let mut seen = Vec::new();
    while !fs.pack_step()? {
        seen.extend(fs.pack_progress());
    }
    assert_eq!(seen.last(), Some(&100), "all 100 reachable records copied");
    assert_eq!(fs.pack_progress(), None);
    let after = std::fs::metadata(&path).expect("stat").len();
    assert!(after < before * 2 / 3, "{after} < {before}");
    assert!(dir.path("a.durus.prepack").exists());
    assert!(!dir.path("a.durus.pack").exists());
    assert_eq!(fs.sync()?.len(), 100);
    assert!(fs.sync()?.is_empty());
    for o in 0..100 {
        fs.load(Oid(o))?;
    }
    assert!(matches!(fs.load(Oid(150)), Err(Error::NotFound(_))));
    // Still writable after the switch, and the lock moved with it.
    commit(
        &mut fs,
        vec![(Oid(5), rec(Oid(5), b"after pack", &[Oid(6)]))],
    );
    assert!(matches!(
        FileStorage::open(&path),
        Err(Error::Storage(StorageError::Locked(_)))
    ));
    drop(fs);
    let mut fs = FileStorage::open(&path)?;
    assert_eq!(fs.load(Oid(5))?, rec(Oid(5), b"after pack", &[Oid(6)]));
    let mut checked = 0;
    let report = file::verify_with_progress(&path, &mut |n| checked = n)?;
    assert!(report.is_ok());
    assert_eq!(checked, 100);
    Ok(())
}

#[test]
fn pack_of_a_file_without_root_empties_it() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-pack-empty");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open(&path)?;
    fs.new_oid()?;
    let a = fs.new_oid()?;
    commit(&mut fs, vec![(a, rec(a, b"orphan", &[]))]);
    fs.pack()?;
    assert_eq!(fs.sync()?, vec![a]);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 40);
    Ok(())
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "test.Root")]
struct Root {
    items: Vec<PRef<Item>>,
    added: Option<PRef<Added>>,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "test.Added")]
struct Added {
    items: Vec<PRef<Item>>,
}

#[derive(Persistent, Serialize, Deserialize)]
#[persistent(class = "test.Item")]
struct Item {
    n: i64,
    pad: String,
}

fn item(n: i64) -> PRef<Item> {
    PRef::new(Item {
        n,
        pad: "x".repeat(200),
    })
}

#[test]
fn pack_while_committing_through_the_hub() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-pack-hub");
    let path = dir.path("a.durus");
    let hub = Hub::new(FileStorage::open_with(
        &path,
        FileOptions::new().pack_step_records(100),
    )?);
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root()?;
    root.write()?.added = Some(PRef::new(Added::default()));
    // 3000 items, then 2000 of them dropped: garbage.
    for chunk in 0..3 {
        for n in 0..1000 {
            root.write()?.items.push(item(chunk * 1000 + n));
        }
        conn.commit()?;
    }
    root.write()?.items.truncate(1000);
    conn.commit()?;
    let before = std::fs::metadata(&path).expect("stat").len();

    // The committer reports each commit; the packer lets one happen between steps.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let committer = {
        let hub = hub.clone();
        std::thread::spawn(move || -> durus_core::Result<()> {
            let conn = Connection::new(hub.storage());
            let root: PRef<Root> = conn.root()?;
            let added = root.read()?.added.clone().expect("added");
            for n in 0..50 {
                added.write()?.items.push(item(10_000 + n));
                // Change an old object too: its new state must survive the pack.
                let old = root.read()?.items[n as usize].clone();
                old.write()?.n = -n;
                conn.commit()?;
                let _ = done_tx.send(n);
            }
            Ok(())
        })
    };
    let mut steps = 0;
    while !hub.pack_step()? {
        steps += 1;
        assert!(steps < 1000, "pack ends");
        let _ = done_rx.recv_timeout(std::time::Duration::from_secs(5));
    }
    assert!(steps > 10, "the pack took several steps ({steps})");
    committer.join().expect("committer")?;
    conn.abort()?;

    let after = std::fs::metadata(&path).expect("stat").len();
    assert!(after < before, "file shrank: {after} < {before}");
    let items = root.read()?.items.clone();
    assert_eq!(items.len(), 1000);
    for (i, it) in items.iter().enumerate() {
        let expected = if i < 50 { -(i as i64) } else { i as i64 };
        assert_eq!(it.read()?.n, expected);
    }
    let added = root.read()?.added.clone().expect("added");
    let added_items = added.read()?.items.clone();
    assert_eq!(added_items.len(), 50);
    for (i, it) in added_items.iter().enumerate() {
        assert_eq!(it.read()?.n, 10_000 + i as i64);
    }
    drop((items, added_items, added, root, conn));
    hub.close()?;
    drop(hub);
    let report = file::verify(&path)?;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.dangling, 0);
    assert_eq!(report.objects, 1 + 1 + 1000 + 50, "garbage is gone");
    Ok(())
}

#[test]
fn fsync_never_still_commits() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-nosync");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open_with(&path, FileOptions::new().fsync(FsyncPolicy::Never))?;
    let a = fs.new_oid()?;
    commit(&mut fs, vec![(a, rec(a, b"fast", &[]))]);
    drop(fs);
    assert_eq!(FileStorage::open(&path)?.load(a)?, rec(a, b"fast", &[]));
    Ok(())
}

fn corrupt_byte(path: &Path, at: u64, value: u8) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at as usize] = value;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn verify_reports_dangling_refs_and_bad_framing_by_offset() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-verify");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open(&path)?;
    let root = fs.new_oid()?;
    commit(&mut fs, vec![(root, rec(root, b"root", &[Oid(1)]))]);
    let a = fs.new_oid()?;
    commit(&mut fs, vec![(a, rec(a, b"a", &[Oid(42)]))]);
    drop(fs);
    let report = file::verify(&path)?;
    assert_eq!(report.objects, 2);
    assert_eq!(report.transactions, 2);
    assert_eq!(report.dangling, 1);
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0].message.contains("oid 42"),
        "{}",
        report.problems[0]
    );
    // Break the first transaction's record framing (its inner oid).
    let first_record = 40 + 8;
    corrupt_byte(&path, first_record + 16 + 7, 9);
    let report = file::verify(&path)?;
    assert!(
        report.problems.iter().any(|p| p.offset == first_record),
        "{:?}",
        report.problems
    );
    match FileStorage::open(&path) {
        Err(Error::Storage(StorageError::Corrupt { offset, .. })) => {
            assert_eq!(offset, first_record)
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    Ok(())
}

#[test]
fn bad_prefix_and_bad_map_are_errors_not_panics() {
    let dir = Scratch::new("fs-bad");
    let path = dir.path("a.durus");
    std::fs::write(&path, b"NOT-A-SHELF-FILE-AT-ALL").expect("write");
    assert!(matches!(
        FileStorage::open(&path),
        Err(Error::Storage(StorageError::Corrupt { offset: 0, .. }))
    ));
    let mut bytes = durus_core::internals::empty_file();
    bytes[31] = 9; // 9 bytes per word
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(
        FileStorage::open(&path),
        Err(Error::Storage(StorageError::Corrupt { offset: 16, .. }))
    ));
    assert!(!file::verify(&path).expect("verify").is_ok());
}

/// The example of docs/FORMAT.md, as Python Durus 4.3 wrote it.
const FORMAT_EXAMPLE: &str = "\
5348454c462d310a000000000000004800000000000000200000000000000000\
000000000000000000000004726f6f7400000000000000010000000000000018\
00000000000000010000000000000001000000046b6570740000000000000013\
0000000000000001000000000000000310385a00000000000000440000000000\
00001f00000000000000010000000000000001000000036e6577000000000000\
00030000000000000015000000000000000300000000000000030000000164";

#[test]
fn format_example_matches_durus_bytes() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-format");
    let path = dir.path("ex.durus");
    let mut fs = FileStorage::open(&path)?;
    let (a, b, c) = (fs.new_oid()?, fs.new_oid()?, fs.new_oid()?);
    commit(
        &mut fs,
        vec![
            (a, rec(a, b"root", &[b])),
            (b, rec(b, b"kept", &[])),
            (c, rec(c, b"gone", &[])),
        ],
    );
    fs.pack()?;
    let d = fs.new_oid()?;
    assert_eq!(d, Oid(3), "the hole 2 was just removed: it is skipped");
    commit(
        &mut fs,
        vec![(b, rec(b, b"new", &[d])), (d, rec(d, b"d", &[]))],
    );
    drop(fs);
    let bytes = std::fs::read(&path).expect("read");
    let hex: String = bytes.iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(hex, FORMAT_EXAMPLE);
    assert_eq!(bytes.len(), 191);
    Ok(())
}

#[test]
fn hub_sessions_learn_the_oids_a_pack_removed() -> durus_core::Result<()> {
    let dir = Scratch::new("fs-pack-invalid");
    let mut fs = FileStorage::open(dir.path("a.durus"))?;
    let oids: Vec<Oid> = (0..4).map(|_| fs.new_oid()).collect::<Result<_, _>>()?;
    let mut records = vec![(Oid::ROOT, rec(Oid::ROOT, b"root", &[Oid(1)]))];
    records.extend(oids[1..].iter().map(|o| (*o, rec(*o, b"x", &[]))));
    commit(&mut fs, records);
    let hub = Hub::new(fs);
    let (a, b) = (hub.session(), hub.session());
    while !hub.pack_step()? {}
    // Removed oids are not handed out while a session may still hold them.
    let fresh = a.new_oids(3)?;
    assert!(
        !fresh.contains(&Oid(2)) && !fresh.contains(&Oid(3)),
        "{fresh:?}"
    );
    for s in [&a, &b] {
        let mut removed = s.sync()?;
        removed.sort_unstable();
        assert_eq!(removed, vec![Oid(2), Oid(3)]);
    }
    Ok(())
}

#[test]
fn loads_follow_the_file_as_it_grows_past_its_first_map() -> durus_core::Result<()> {
    // Loads read a map of the file that reaches 64 MiB past its committed
    // end at open; commits beyond that make a new map. Every record, old
    // and new, must load the same before and after, and after a reopen.
    let dir = Scratch::new("fs-grow");
    let path = dir.path("a.durus");
    let mut fs = FileStorage::open_with(&path, FileOptions::new().fsync(FsyncPolicy::Never))?;
    let data = |i: usize| vec![b'a' + i as u8; 9 << 20];
    let mut oids = Vec::new();
    for i in 0..9 {
        let oid = fs.new_oid()?;
        commit(&mut fs, vec![(oid, rec(oid, &data(i), &[]))]);
        oids.push(oid);
        for (j, oid) in oids.iter().enumerate() {
            assert_eq!(
                fs.load(*oid)?,
                rec(*oid, &data(j), &[]),
                "record {j} after commit {i}"
            );
        }
    }
    assert!(fs.file_len()? > 80 << 20);
    drop(fs);
    let mut fs = FileStorage::open_with(&path, FileOptions::new().read_only(true))?;
    for (j, oid) in oids.iter().enumerate() {
        assert_eq!(fs.load(*oid)?, rec(*oid, &data(j), &[]));
    }
    Ok(())
}
