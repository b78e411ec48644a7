//! A file cut at every byte of its last transaction: open says exactly where
//! and what, and with repair gives back every earlier transaction.
//! Corruption before the last transaction is an error naming its offset.

mod support;

use durus_core::error::StorageError;
use durus_core::storage::file::{self, FileOptions};
use durus_core::{Error, FileStorage, Oid, Storage};
use std::path::Path;
use support::{commit, rec, Scratch};

/// A packed base, one later transaction, then the last one. Returns the
/// length before the last transaction.
fn build(path: &Path) -> u64 {
    let mut fs = FileStorage::open(path).expect("open");
    let oids: Vec<Oid> = (0..4).map(|_| fs.new_oid().expect("oid")).collect();
    commit(
        &mut fs,
        oids.iter()
            .map(|o| (*o, rec(*o, b"base", &oids[1..])))
            .collect(),
    );
    fs.pack().expect("pack");
    commit(&mut fs, vec![(Oid(1), rec(Oid(1), b"second", &[]))]);
    let before_last = fs.file_len().expect("len");
    let new = fs.new_oid().expect("oid");
    commit(
        &mut fs,
        vec![
            (Oid(2), rec(Oid(2), b"last", &[new])),
            (new, rec(new, &[5u8; 40], &[Oid(1)])),
            (Oid(3), rec(Oid(3), b"last too", &[])),
        ],
    );
    before_last
}

fn check_earlier(fs: &mut FileStorage) {
    assert_eq!(fs.load(Oid(1)).expect("1"), rec(Oid(1), b"second", &[]));
    let base_refs = [Oid(1), Oid(2), Oid(3)];
    assert_eq!(
        fs.load(Oid(2)).expect("2"),
        rec(Oid(2), b"base", &base_refs)
    );
    assert_eq!(
        fs.load(Oid(3)).expect("3"),
        rec(Oid(3), b"base", &base_refs)
    );
}

#[test]
fn every_cut_of_the_last_transaction_is_found_and_repaired() {
    let dir = Scratch::new("torn");
    let full_path = dir.path("full.durus");
    let before_last = build(&full_path);
    let full = std::fs::read(&full_path).expect("read");
    let end = full.len() as u64;
    assert!(end - before_last > 100);
    let path = dir.path("cut.durus");
    for cut in before_last + 1..end {
        std::fs::write(&path, &full[..cut as usize]).expect("write cut");
        match FileStorage::open(&path) {
            Err(Error::Storage(StorageError::TornTail {
                path: shown_path,
                offset,
                bytes,
                message,
            })) => {
                assert_eq!(shown_path, path.display().to_string());
                assert_eq!(
                    (offset, bytes),
                    (before_last, cut - before_last),
                    "cut at {cut}"
                );
                let shown = Error::Storage(StorageError::TornTail {
                    path: shown_path.clone(),
                    offset,
                    bytes,
                    message,
                })
                .to_string();
                assert!(shown.contains(&format!("offset {before_last}")), "{shown}");
                assert!(
                    shown.contains(&format!("`durus repair {shown_path}`")),
                    "{shown}"
                );
            }
            other => panic!("cut at {cut}: expected a torn tail, got {other:?}"),
        }
        let mut fs =
            FileStorage::open_with(&path, FileOptions::new().repair(true)).expect("repair");
        let cut_info = fs.repaired().expect("something was cut").clone();
        assert_eq!(
            (cut_info.offset, cut_info.bytes),
            (before_last, cut - before_last)
        );
        check_earlier(&mut fs);
        drop(fs);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), before_last);
        assert!(file::verify(&path).expect("verify").is_ok());
    }
    // The whole file opens as it is.
    let mut fs = FileStorage::open(&full_path).expect("open");
    assert!(fs.repaired().is_none());
    assert_eq!(fs.load(Oid(3)).expect("3"), rec(Oid(3), b"last too", &[]));
}

#[test]
fn repair_function_reports_the_cut_and_read_only_repair_ignores_the_tail() {
    let dir = Scratch::new("torn-fn");
    let path = dir.path("a.durus");
    let before_last = build(&path);
    let len = std::fs::metadata(&path).expect("stat").len();
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..(len - 3) as usize]).expect("cut");

    let report = file::verify(&path).expect("verify");
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].offset, before_last);

    let mut ro = FileStorage::open_with(&path, FileOptions::new().read_only(true).repair(true))
        .expect("read-only open ignoring the tail");
    check_earlier(&mut ro);
    drop(ro);
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        len - 3,
        "read-only leaves the file"
    );

    let report = file::repair(&path).expect("repair");
    let cut = report.cut.expect("cut");
    assert_eq!(
        (cut.offset, cut.bytes),
        (before_last, len - 3 - before_last)
    );
    assert_eq!(report.file_len, before_last);
    assert_eq!(file::repair(&path).expect("again").cut, None);
}

#[test]
fn corruption_before_the_last_transaction_is_an_error_with_its_offset() {
    let dir = Scratch::new("torn-mid");
    let path = dir.path("a.durus");
    let before_last = build(&path);
    let mut bytes = std::fs::read(&path).expect("read");
    // The second transaction's only record: make its length absurd.
    let second_tx = (before_last - (8 + 16 + rec(Oid(1), b"second", &[]).len() as u64)) as usize;
    let record_at = second_tx + 8;
    bytes[record_at + 7] = 0xff;
    std::fs::write(&path, &bytes).expect("write");
    for options in [FileOptions::new(), FileOptions::new().repair(true)] {
        match FileStorage::open_with(&path, options) {
            Err(Error::Storage(StorageError::Corrupt { offset, message })) => {
                assert_eq!(offset, record_at as u64, "{message}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
    assert!(file::repair(&path).is_err());
}
