//! Faults injected through the I/O layer: the Nth write or fsync fails.
//! No acknowledged commit is lost, every later write is refused, and the
//! file opens afterwards. Also: concurrent commits share fsyncs.

mod support;

use durus_core::error::StorageError;
use durus_core::internals::record;
use durus_core::storage::file::{FileIo, FileOptions, IoWrapper};
use durus_core::storage::{CommitHandler, NoConflicts};
use durus_core::{Error, FileStorage, Hub, Oid, Storage};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use support::Scratch;

/// Counts writes and syncs; fails the ones it is told to.
#[derive(Default)]
struct Plan {
    writes: AtomicU64,
    syncs: AtomicU64,
    /// Fail the write with this number (1-based), writing half of it first.
    fail_write: AtomicU64,
    /// Fail the sync with this number (1-based).
    fail_sync: AtomicU64,
    /// After the failing write, fail set_len too (the file keeps a torn tail).
    fail_truncate: AtomicBool,
    failed: AtomicBool,
}

struct FaultIo {
    inner: Arc<dyn FileIo>,
    plan: Arc<Plan>,
}

fn injected() -> io::Error {
    io::Error::other("injected fault")
}

impl FileIo for FaultIo {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn map_source(&self) -> Option<&std::fs::File> {
        self.inner.map_source()
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let n = self.plan.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.plan.fail_write.load(Ordering::SeqCst) {
            self.plan.failed.store(true, Ordering::SeqCst);
            self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(injected());
        }
        self.inner.write_all_at(buf, offset)
    }

    fn sync(&self, data_only: bool) -> io::Result<()> {
        let n = self.plan.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.plan.fail_sync.load(Ordering::SeqCst) {
            self.plan.failed.store(true, Ordering::SeqCst);
            return Err(injected());
        }
        self.inner.sync(data_only)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.plan.failed.load(Ordering::SeqCst) && self.plan.fail_truncate.load(Ordering::SeqCst)
        {
            return Err(injected());
        }
        self.inner.set_len(len)
    }

    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }
}

fn wrapper(plan: &Arc<Plan>) -> IoWrapper {
    let plan = plan.clone();
    Arc::new(move |inner| {
        Arc::new(FaultIo {
            inner,
            plan: plan.clone(),
        }) as Arc<dyn FileIo>
    })
}

fn rec(oid: Oid, n: u64) -> Vec<u8> {
    record::pack(oid, format!("value {n}").as_bytes(), &[]).expect("pack")
}

/// (oid, n): the record of `oid` holds value n.
type Commits = Vec<(Oid, u64)>;

/// Commits one record per transaction until one fails; returns the
/// acknowledged (oid, n), the records of the failed commit (which may or
/// may not have reached the file), and checks that later writes are refused.
fn commit_until_failure(fs: &mut FileStorage, rounds: u64) -> (Commits, Commits) {
    let mut acked: Vec<(Oid, u64)> = Vec::new();
    for n in 0..rounds {
        let oid = match fs.new_oid() {
            Ok(oid) => oid,
            Err(e) => panic!("new_oid before any failure: {e}"),
        };
        fs.begin();
        fs.store(oid, rec(oid, n)).expect("store");
        // Rewrite an earlier record too, so a lost write would show.
        if let Some((old, _)) = acked.first().copied() {
            fs.store(old, rec(old, 1000 + n)).expect("store");
        }
        let done = fs.end(&mut NoConflicts).and_then(|d| d.wait());
        match done {
            Ok(()) => {
                acked.push((oid, n));
                if let Some(first) = acked.first_mut() {
                    if first.0 != oid {
                        first.1 = 1000 + n;
                    }
                }
            }
            Err(_) => {
                // Every later write is refused, not retried.
                fs.begin();
                let refused = fs
                    .store(oid, rec(oid, 0))
                    .and_then(|()| fs.end(&mut NoConflicts))
                    .map(|_| ());
                assert!(
                    matches!(refused, Err(Error::Storage(StorageError::ReadOnly(_)))),
                    "write after a failure: {refused:?}"
                );
                let mut failed = vec![(oid, n)];
                failed.extend(acked.first().map(|(old, _)| (*old, 1000 + n)));
                return (acked, failed);
            }
        }
    }
    (acked, Vec::new())
}

/// Every acknowledged record is there, unless the unacknowledged failed
/// commit replaced it (a failed fsync says nothing of what reached the file).
fn check_acked(path: &Path, acked: &[(Oid, u64)], failed: &[(Oid, u64)], repair: bool) {
    let mut fs = FileStorage::open_with(path, FileOptions::new().repair(repair)).expect("reopen");
    for (oid, n) in acked {
        let found = fs.load(*oid).expect("acknowledged record");
        let newer = failed
            .iter()
            .any(|(o, m)| o == oid && found == rec(*oid, *m));
        assert!(found == rec(*oid, *n) || newer, "oid {oid}");
    }
}

#[test]
fn a_failed_write_loses_no_acknowledged_commit() {
    let dir = Scratch::new("faults-write");
    // Write 1 creates the file; later writes are commits.
    for nth in 2..12 {
        let path = dir.path(&format!("w{nth}.durus"));
        let plan = Arc::new(Plan::default());
        plan.fail_write.store(nth, Ordering::SeqCst);
        let mut fs = FileStorage::open_with(&path, FileOptions::new().wrap_io(wrapper(&plan)))
            .expect("open");
        let (acked, failed) = commit_until_failure(&mut fs, 20);
        assert_eq!(acked.len() as u64, nth - 2);
        drop(fs);
        // The failed transaction was cut back: the file opens without repair.
        check_acked(&path, &acked, &failed, false);
    }
}

#[test]
fn a_failed_write_whose_cleanup_fails_leaves_a_repairable_tail() {
    let dir = Scratch::new("faults-write-torn");
    let path = dir.path("a.durus");
    let plan = Arc::new(Plan::default());
    plan.fail_write.store(5, Ordering::SeqCst);
    plan.fail_truncate.store(true, Ordering::SeqCst);
    let mut fs =
        FileStorage::open_with(&path, FileOptions::new().wrap_io(wrapper(&plan))).expect("open");
    let (acked, failed) = commit_until_failure(&mut fs, 20);
    assert_eq!(acked.len(), 3);
    drop(fs);
    assert!(matches!(
        FileStorage::open(&path),
        Err(Error::Storage(StorageError::TornTail { .. }))
    ));
    check_acked(&path, &acked, &failed, true);
}

#[test]
fn a_failed_fsync_is_not_retried_and_loses_no_acknowledged_commit() {
    let dir = Scratch::new("faults-sync");
    // Sync 1 is the file's creation; later syncs are commits.
    for nth in 2..10 {
        let path = dir.path(&format!("s{nth}.durus"));
        let plan = Arc::new(Plan::default());
        plan.fail_sync.store(nth, Ordering::SeqCst);
        let mut fs = FileStorage::open_with(&path, FileOptions::new().wrap_io(wrapper(&plan)))
            .expect("open");
        let (acked, failed) = commit_until_failure(&mut fs, 20);
        assert_eq!(acked.len() as u64, nth - 2);
        let syncs = plan.syncs.load(Ordering::SeqCst);
        assert_eq!(syncs, nth, "no fsync after the failed one");
        drop(fs);
        check_acked(&path, &acked, &failed, false);
    }
}

#[test]
fn a_failed_pack_leaves_the_database_usable() {
    let dir = Scratch::new("faults-pack");
    for nth in 1..4 {
        let path = dir.path(&format!("p{nth}.durus"));
        let plan = Arc::new(Plan::default());
        let mut fs = FileStorage::open_with(&path, FileOptions::new().wrap_io(wrapper(&plan)))
            .expect("open");
        let (acked, _) = commit_until_failure(&mut fs, 5);
        let root_refs: Vec<Oid> = acked
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| *o != Oid::ROOT)
            .collect();
        fs.begin();
        fs.store(
            Oid::ROOT,
            record::pack(Oid::ROOT, b"root", &root_refs).expect("pack"),
        )
        .expect("store");
        fs.end(&mut NoConflicts)
            .expect("end")
            .wait()
            .expect("durable");
        let writes = plan.writes.load(Ordering::SeqCst);
        plan.fail_write.store(writes + nth, Ordering::SeqCst);
        assert!(fs.pack().is_err(), "pack write {nth} fails");
        assert!(!dir.path(&format!("p{nth}.durus.pack")).exists());
        // The pack's failure does not touch the database: commits go on.
        let oid = fs.new_oid().expect("oid");
        fs.begin();
        fs.store(oid, rec(oid, 77)).expect("store");
        fs.end(&mut NoConflicts)
            .expect("end")
            .wait()
            .expect("durable");
        drop(fs);
        let mut expected: Vec<(Oid, u64)> =
            acked.into_iter().filter(|(o, _)| *o != Oid::ROOT).collect();
        expected.push((oid, 77));
        check_acked(&path, &expected, &[], false);
    }
}

/// Each thread writes only its own oids: others' commits are no conflict.
struct Disjoint;

impl CommitHandler for Disjoint {
    fn invalidated(&mut self, _: &[Oid]) -> durus_core::Result<Vec<Oid>> {
        Ok(Vec::new())
    }

    fn resolve(&mut self, _: Vec<(Oid, Vec<u8>)>) -> durus_core::Result<Vec<(Oid, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

#[test]
fn concurrent_commits_share_fsyncs() {
    let dir = Scratch::new("faults-group");
    let path = dir.path("a.durus");
    let plan = Arc::new(Plan::default());
    let fs =
        FileStorage::open_with(&path, FileOptions::new().wrap_io(wrapper(&plan))).expect("open");
    let hub = Hub::new(fs);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let mut storage = hub.storage();
                for n in 0..25 {
                    let oid = storage.new_oid().expect("oid");
                    storage.begin();
                    storage.store(oid, rec(oid, n)).expect("store");
                    storage
                        .end(&mut Disjoint)
                        .expect("end")
                        .wait()
                        .expect("durable");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let commits = 8 * 25;
    let syncs = plan.syncs.load(Ordering::SeqCst) - 1;
    assert!(syncs < commits, "{syncs} fsyncs for {commits} commits");
    eprintln!("{syncs} fsyncs for {commits} commits");
}
