//! Several clients on one PostgreSQL database, each with its own
//! `PgStorage` (as separate processes would be): conflicts, merges,
//! invalidations at sync, BTree inserts, pack, and a commit whose database
//! session goes away. A throwaway cluster (tests/support/pg.rs).

mod collections_common;
mod support;

use collections_common::tree_of;
use durus_core::storage::NoConflicts;
use durus_core::{
    ConflictKind, Connection, Error, Hub, Oid, PRef, Persistent, PgStorage, Result, Status, Storage,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use support::pg;

#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "pgtest.Root")]
struct Root {
    x: Option<PRef<Counter>>,
    y: Option<PRef<Counter>>,
    items: Vec<PRef<Counter>>,
}

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq)]
#[persistent(class = "pgtest.Counter")]
struct Counter {
    #[merge(sum)]
    hits: i64,
    label: String,
}

fn open(url: &str) -> Connection {
    Connection::new(PgStorage::connect(url).expect("connect"))
}

/// A database with a root holding counters x and y.
fn setup(cluster: &pg::Cluster, name: &str) -> String {
    let url = cluster.new_database(name);
    let conn = open(&url);
    let root: PRef<Root> = conn.root().expect("root");
    {
        let mut r = root.write().expect("write");
        r.x = Some(PRef::new(Counter::default()));
        r.y = Some(PRef::new(Counter::default()));
    }
    conn.commit().expect("commit");
    url
}

fn counters(conn: &Connection) -> (PRef<Counter>, PRef<Counter>) {
    let root: PRef<Root> = conn.root().expect("root");
    let r = root.read().expect("read");
    (r.x.clone().expect("x"), r.y.clone().expect("y"))
}

fn hits(url: &str) -> (i64, i64) {
    let conn = open(url);
    let (x, y) = counters(&conn);
    let out = (x.read().expect("x").hits, y.read().expect("y").hits);
    out
}

#[test]
fn both_apply_then_both_commit_a_write_conflict() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "write_conflict");
    let (a, b) = (open(&url), open(&url));
    let (xa, _) = counters(&a);
    let (xb, _) = counters(&b);
    xa.write()?.label = "a".into();
    xb.write()?.label = "b".into();
    a.commit()?;
    match b.commit() {
        Err(Error::Conflict(c)) => {
            assert_eq!(c.kind, ConflictKind::Write);
            assert_eq!(c.oids, vec![xb.oid().expect("oid")]);
        }
        other => panic!("expected a write conflict, got {other:?}"),
    }
    assert!(matches!(b.commit(), Err(Error::NeedsAbort)));
    b.abort()?;
    assert_eq!(xb.status(), Status::Ghost);
    assert_eq!(xb.read()?.label, "a");
    b.transaction(3, |_| {
        xb.write()?.label.push('b');
        Ok(())
    })?;
    a.sync()?;
    assert_eq!(xa.read()?.label, "ab");
    Ok(())
}

#[test]
fn sum_counters_merge_at_commit() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "merge_sum");
    let (a, b) = (open(&url), open(&url));
    let (xa, _) = counters(&a);
    let (xb, _) = counters(&b);
    xa.write()?.hits += 1;
    xb.write()?.hits += 2;
    a.commit()?;
    b.commit()?;
    assert_eq!(b.merge_count(), 1);
    assert_eq!(xb.read()?.hits, 3, "the merged state is installed");
    assert_eq!(hits(&url), (3, 0));
    Ok(())
}

#[test]
fn loading_an_object_changed_since_a_read_is_a_read_conflict() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "read_conflict");
    // More items than a load prefetches: the last one is loaded on its own.
    let many = 100;
    {
        let conn = open(&url);
        let root: PRef<Root> = conn.root()?;
        root.write()?.items = (0..many).map(|_| PRef::new(Counter::default())).collect();
        conn.commit()?;
    }
    let (a, b) = (open(&url), open(&url));
    let mut watcher = PgStorage::connect(&url)?;
    let root_b: PRef<Root> = b.root()?;
    let (first_b, last_b) = {
        let r = root_b.read()?;
        (r.items[0].clone(), r.items[many - 1].clone())
    };
    assert_eq!(first_b.read()?.hits, 0); // b reads the first item
    let root_a: PRef<Root> = a.root()?;
    for i in [0, many - 1] {
        root_a.read()?.items[i].write()?.hits = 5;
    }
    a.commit()?;
    let last = last_b.oid().expect("oid");
    match watcher.load(last) {
        Err(Error::Conflict(c)) => assert_eq!((c.kind, c.oids), (ConflictKind::Read, vec![last])),
        other => panic!("the storage must refuse a record newer than its last sync: {other:?}"),
    }
    match last_b.read().map(|y| y.hits) {
        Err(Error::Conflict(c)) => {
            assert_eq!(c.kind, ConflictKind::Read);
            assert_eq!(c.oids, vec![last]);
        }
        other => panic!("expected a read conflict, got {other:?}"),
    }
    b.abort()?;
    assert_eq!((first_b.read()?.hits, last_b.read()?.hits), (5, 5));
    Ok(())
}

#[test]
fn a_thread_with_its_own_storage_sees_invalidations_at_sync() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "sync");
    let mut watcher = PgStorage::connect(&url)?;
    let conn = open(&url);
    let (x, _) = counters(&conn);
    assert_eq!(x.read()?.hits, 0);
    // The read ends with its transaction: a sync in the next one makes x a
    // ghost (a sync after a read of x in the same one would conflict).
    conn.commit()?;
    let other_url = url.clone();
    let x_oid = thread::spawn(move || -> Result<Oid> {
        let conn = open(&other_url);
        let (x, _) = counters(&conn);
        x.write()?.hits = 42;
        conn.commit()?;
        Ok(x.oid().expect("oid"))
    })
    .join()
    .expect("thread")?;
    assert_eq!(watcher.sync()?, vec![x_oid]);
    assert_eq!(watcher.sync()?, Vec::<Oid>::new(), "reported once");
    assert_eq!(x.status(), Status::Saved, "nothing changes before a sync");
    conn.sync()?;
    assert_eq!(x.status(), Status::Ghost);
    assert_eq!(x.read()?.hits, 42);
    Ok(())
}

#[test]
fn many_clients_increment_one_sum_counter_without_conflicts() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "hot_counter");
    let (clients, incs) = (4, 25);
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || -> Result<u64> {
                let conn = open(&url);
                let (x, _) = counters(&conn);
                barrier.wait();
                let mut conflicts = 0;
                for _ in 0..incs {
                    x.write()?.hits += 1;
                    match conn.commit() {
                        Ok(()) => {}
                        Err(e) if e.is_conflict() => {
                            conflicts += 1;
                            conn.abort()?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(conflicts)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread")?, 0, "sum counters merge");
    }
    assert_eq!(hits(&url).0, (clients * incs) as i64);
    Ok(())
}

#[test]
fn btree_inserts_by_two_clients() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("btree");
    {
        let conn = open(&url);
        tree_of(&conn)?;
        conn.commit()?;
    }
    // Interleaved: both insert into the one leaf, then both commit.
    let (a, b) = (open(&url), open(&url));
    let (ta, tb) = (tree_of(&a)?, tree_of(&b)?);
    for round in 0..3u64 {
        ta.insert(round * 2, "a".into())?;
        tb.insert(round * 2 + 1, "b".into())?;
        a.commit()?;
        b.commit()?;
    }
    assert!(b.merge_count() >= 3, "{} merges", b.merge_count());
    drop((ta, tb, a, b));
    // Free running in two threads: leaves split, conflicts are retried.
    let per_client = 150u64;
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let url = url.clone();
            thread::spawn(move || -> Result<()> {
                let conn = open(&url);
                let tree = tree_of(&conn)?;
                for i in 0..per_client {
                    let k = 100 + i * 2 + t;
                    conn.transaction(100, |_| tree.insert(k, format!("{k}")).map(|_| ()))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread")?;
    }
    let conn = open(&url);
    let tree = tree_of(&conn)?;
    tree.verify()?;
    assert_eq!(tree.len()?, 6 + 2 * per_client);
    for k in 100..100 + 2 * per_client {
        assert_eq!(tree.get(&k)?, Some(format!("{k}")), "key {k}");
    }
    Ok(())
}

#[test]
fn pack_removes_unreachable_objects_while_another_client_holds_a_ghost() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "pack");
    let a = open(&url);
    let root_a: PRef<Root> = a.root()?;
    root_a.write()?.items = (0..3)
        .map(|i| {
            PRef::new(Counter {
                hits: i,
                label: format!("item {i}"),
            })
        })
        .collect();
    a.commit()?;
    let b = open(&url);
    let root_b: PRef<Root> = b.root()?;
    let gone_b = root_b.read()?.items[2].clone(); // a ghost in b
    assert_eq!(gone_b.status(), Status::Ghost);
    let gone = gone_b.oid().expect("oid");
    root_a.write()?.items.pop();
    a.commit()?;
    let rows_before = object_rows(&url);
    a.pack()?;
    assert_eq!(object_rows(&url), rows_before - 1);
    let mut sql = pg::Cluster::client(&url);
    let removed: Vec<i64> = sql
        .query("SELECT oid FROM durus_removed", &[])
        .expect("removed")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(removed, vec![gone.0 as i64]);
    // b learns of the removal at its next sync; its ghost cannot load.
    b.abort()?;
    assert!(matches!(gone_b.read().map(|_| ()), Err(Error::Conflict(_))));
    b.abort()?;
    assert_eq!(root_b.read()?.items.len(), 2);
    let kept = root_b.read()?.items[1].clone();
    kept.write()?.hits += 10;
    b.commit()?;
    // A second pack finds nothing more; commits go on.
    a.pack()?;
    assert_eq!(object_rows(&url), rows_before - 1);
    a.abort()?;
    assert_eq!(root_a.read()?.items[1].read()?.hits, 11);
    Ok(())
}

#[test]
fn a_hub_over_one_storage_and_a_direct_client_share_a_database() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "hub_and_direct");
    let hub = Hub::new(PgStorage::connect(&url)?);
    let (h1, h2) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    let direct = open(&url);
    let (x1, _) = counters(&h1);
    let (x2, _) = counters(&h2);
    let (xd, _) = counters(&direct);
    assert_eq!((x1.read()?.hits, x2.read()?.hits), (0, 0));
    h1.commit()?;
    h2.commit()?;
    xd.write()?.hits += 5;
    direct.commit()?;
    // Both hub sessions learn of the other process's commit.
    h1.sync()?;
    h2.sync()?;
    assert_eq!((x1.read()?.hits, x2.read()?.hits), (5, 5));
    x1.write()?.hits += 1;
    h1.commit()?;
    direct.commit()?;
    direct.sync()?;
    assert_eq!(xd.read()?.hits, 6);
    // A pack through the hub reaches its sessions as invalidations.
    hub.with_storage(|s| s.pack())?;
    assert_eq!(hits(&url), (6, 0));
    Ok(())
}

#[test]
fn clients_making_the_schema_at_once_all_succeed() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("schema_race");
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                PgStorage::connect(&url).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread")?;
    }
    let mut sql = pg::Cluster::client(&url);
    let versions = sql
        .query("SELECT version FROM durus_schema", &[])
        .expect("schema");
    assert_eq!(versions.len(), 1);
    Ok(())
}

#[test]
fn a_bad_url_is_a_clear_error() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let err =
        PgStorage::connect("postgresql://app:secret@127.0.0.1:notaport/x").expect_err("bad port");
    let text = err.to_string();
    assert!(text.contains("bad PostgreSQL URL"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    // A port nobody listens on (the cluster's own port + 0 is taken, so ask
    // the system for a free one and do not listen on it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let err = PgStorage::connect(&format!("postgresql://postgres@127.0.0.1:{port}/x"))
        .expect_err("nobody listens");
    assert!(err.to_string().contains("connect to 127.0.0.1"), "{err}");
    let missing = cluster.url("no_such_database");
    let err = PgStorage::connect(&missing).expect_err("no database");
    assert!(err.to_string().contains("no_such_database"), "{err}");
}

/// A commit waiting for the commit lock whose database session is killed
/// fails with an error, and nothing of it is written.
#[test]
fn a_commit_whose_session_dies_writes_nothing() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "session_dies");
    let mut holder = pg::Cluster::client(&url);
    holder
        .batch_execute("BEGIN; SELECT tid FROM durus_commit FOR UPDATE")
        .expect("take the commit lock");
    let committer_url = url.clone();
    let committer = thread::spawn(move || -> Result<()> {
        let conn = open(&committer_url);
        let (x, _) = counters(&conn);
        x.write()?.hits = 99;
        conn.commit()
    });
    // Wait (bounded) for the committer to block on the lock, then end its session.
    let mut admin = cluster.admin();
    let t0 = Instant::now();
    let killed = loop {
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'durus' AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("terminate");
        if !rows.is_empty() || t0.elapsed() > Duration::from_secs(30) {
            break !rows.is_empty();
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(killed, "the committer never waited for the lock");
    let out = committer.join().expect("thread");
    let err = out.expect_err("the session died");
    assert!(
        err.to_string().contains("postgresql: commit"),
        "a plain error, not an unknown outcome: {err}"
    );
    holder.batch_execute("ROLLBACK").expect("release");
    assert_eq!(hits(&url), (0, 0), "nothing was written");
    // The storage of a dead session says so; a new one works.
    let mut s = PgStorage::connect(&url)?;
    let oid = s.new_oid()?;
    s.begin();
    let rec = durus_core::internals::record::pack(oid, b"x", &[]).expect("record");
    s.store(oid, rec.clone())?;
    s.end(&mut NoConflicts)?.wait()?;
    assert_eq!(s.load(oid)?, rec);
    Ok(())
}

fn object_rows(url: &str) -> i64 {
    let mut sql = pg::Cluster::client(url);
    sql.query_one("SELECT count(*) FROM durus_object", &[])
        .expect("count")
        .get(0)
}

/// A commit too large to send as literals (records bound as parameters)
/// is whole; a commit the server refuses halfway writes nothing, on both
/// paths, and says so (not "outcome unknown").
#[test]
fn large_commits_and_refused_writes_are_whole() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "large_and_refused");
    let big = |n: usize| -> Vec<PRef<Counter>> {
        (0..n)
            .map(|i| {
                PRef::new(Counter {
                    hits: i as i64,
                    label: "x".repeat(1_000),
                })
            })
            .collect()
    };
    let conn = open(&url);
    let root: PRef<Root> = conn.root()?;
    root.write()?.items = big(400); // about 400 KB
    conn.commit()?;
    let other = open(&url);
    let root_other: PRef<Root> = other.root()?;
    let sum: i64 = root_other
        .read()?
        .items
        .iter()
        .map(|c| c.read().map(|c| c.hits))
        .sum::<Result<i64>>()?;
    assert_eq!(sum, 399 * 400 / 2);

    // The server refuses any row whose label is "refuse" (a trigger).
    let mut sql = pg::Cluster::client(&url);
    sql.batch_execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF position('refuse' in encode(NEW.data, 'escape')) > 0 THEN \
             RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON durus_object \
           FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .expect("trigger");
    let rows = object_rows(&url);
    for n in [1, 400] {
        let (x, y) = counters(&conn);
        x.write()?.hits = 1_000;
        root.write()?.items.extend(big(n));
        y.write()?.label = "refuse".into();
        let err = conn.commit().expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("refused by the test"), "{text}");
        assert!(!text.contains("outcome unknown"), "{text}");
        conn.abort()?;
        assert_eq!(object_rows(&url), rows, "nothing written ({n} new objects)");
        assert_eq!(x.read()?.hits, 0);
    }
    // The storage goes on.
    let (x, _) = counters(&conn);
    x.write()?.hits = 7;
    conn.commit()?;
    assert_eq!(hits(&url).0, 7);
    Ok(())
}

/// A commit handler that takes every invalidation and merges nothing: the
/// storage's own checks are what is tested.
struct AcceptAll;

impl durus_core::storage::CommitHandler for AcceptAll {
    fn invalidated(&mut self, _: &[Oid]) -> Result<Vec<Oid>> {
        Ok(Vec::new())
    }
    fn resolve(&mut self, _: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

#[test]
fn an_oid_handed_out_to_one_client_and_written_by_another_is_an_update() -> Result<()> {
    // Client A is handed an oid, client B writes that oid first (a client
    // may store under any oid); A's large write of it must update B's row,
    // not fail as a duplicate insert.
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("fresh_written_by_another");
    let mut a = PgStorage::connect(&url)?;
    let mut b = PgStorage::connect(&url)?;
    a.begin();
    let oid = a.new_oid()?;
    b.begin();
    let rec = |data: &[u8]| durus_core::internals::record::pack(oid, data, &[]).expect("record");
    b.store(oid, rec(b"made by b"))?;
    b.end(&mut NoConflicts)?.wait()?;
    a.begin();
    let large = vec![7u8; 40_000];
    a.store(oid, rec(&large))?;
    a.end(&mut AcceptAll)?.wait()?;
    b.sync()?;
    let stored = b.load(oid)?;
    assert_eq!(
        durus_core::internals::record::unpack(&stored)
            .map(|r| r.data.len())
            .ok(),
        Some(large.len())
    );
    Ok(())
}

#[test]
fn loads_after_close_fail_even_for_records_fetched_ahead() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "ahead_after_close");
    let mut storage = PgStorage::connect(&url)?;
    let root = storage.load(Oid::ROOT)?;
    let refs: Vec<Oid> = durus_core::internals::record::unpack(&root)
        .map(|r| r.ref_oids().collect())
        .unwrap_or_default();
    assert!(!refs.is_empty(), "the root refers to its counters");
    // Brings the root again and, ahead, the records it refers to.
    storage.bulk_load(&[Oid::ROOT])?;
    storage.close()?;
    for oid in refs {
        assert!(storage.load(oid).is_err(), "oid {oid} loaded after close");
    }
    Ok(())
}

#[test]
fn a_bulk_load_that_asks_for_an_oid_twice_gets_it_twice() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = setup(&cluster, "bulk_load_twice");
    let mut storage = PgStorage::connect(&url)?;
    let root = storage.load(Oid::ROOT)?;
    let records = storage.bulk_load(&[Oid::ROOT, Oid::ROOT])?;
    assert_eq!(records, vec![root.clone(), root]);
    Ok(())
}

/// `durus_removed` keeps the removals of the last two packs: three packs
/// that each remove one object leave two rows.
#[test]
fn removed_oids_are_kept_for_two_packs() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("removed_trim");
    let mut s = PgStorage::connect(&url)?;
    // The root is at oid 0 (as `Connection::root` puts it).
    let root = Oid::ROOT;
    support::commit(&mut s, vec![(root, support::rec(root, b"root", &[]))]);
    let mut gone = Vec::new();
    for _ in 0..3 {
        let orphan = s.new_oid()?;
        support::commit(&mut s, vec![(orphan, support::rec(orphan, b"x", &[]))]);
        s.pack()?;
        // The pack's removals come to its own client at its next sync.
        s.sync()?;
        gone.push(orphan.0 as i64);
    }
    let mut admin = pg::Cluster::client(&url);
    let rows: Vec<i64> = admin
        .query("SELECT oid FROM durus_removed ORDER BY oid", &[])
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, gone[1..].to_vec());
    Ok(())
}

/// The oid sequence never hands out oid 0, the root's: a root made
/// through a server (which hands 0 out of turn) cannot be overwritten by a
/// new object of a client that reserves the sequence's first block.
#[test]
fn new_oids_never_include_the_root() -> Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("no_root_oid");
    let mut s = PgStorage::connect(&url)?;
    for _ in 0..40 {
        assert_ne!(s.new_oid()?, Oid::ROOT);
    }
    Ok(())
}
