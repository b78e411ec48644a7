//! Two hubs over one PostgreSQL database (what two `durus serve` processes
//! are): a commit through either is checked under PostgreSQL's commit lock
//! against what changed since *its session's* sync point, whatever other
//! sessions of its hub do meanwhile.

mod support;

use durus_core::storage::{CommitHandler, NoConflicts};
use durus_core::{Hub, Oid, PgStorage, Result, Storage};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use support::{commit, pg, rec};

/// A hub over its own `PgStorage` of `url`: one server.
fn server(url: &str) -> Hub {
    Hub::new(PgStorage::connect(url).expect("connect"))
}

/// A client that read `used`: an invalidation of it is a conflict; other
/// invalidations are fine. Runs `inside` once, within the commit exchange.
struct Client<F: FnMut()> {
    used: Oid,
    inside: Option<F>,
}

impl<F: FnMut()> CommitHandler for Client<F> {
    fn invalidated(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        if let Some(mut inside) = self.inside.take() {
            inside();
        }
        if oids.contains(&self.used) {
            // NoConflicts refuses any invalidation: a write conflict.
            return NoConflicts.invalidated(&[self.used]);
        }
        Ok(Vec::new())
    }
    fn resolve(&mut self, _: Vec<(Oid, Vec<u8>)>) -> Result<Vec<(Oid, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

/// A database with the root and two objects, 1 and 2.
fn setup(name: &str) -> Option<(std::sync::Arc<pg::Cluster>, String)> {
    let cluster = pg::cluster()?;
    let url = cluster.new_database(name);
    let mut s = PgStorage::connect(&url).expect("connect");
    let oids: Vec<Oid> = (0..3).map(|_| s.new_oid().expect("oid")).collect();
    commit(
        &mut s,
        oids.iter().map(|o| (*o, rec(*o, b"v0", &[]))).collect(),
    );
    Some((cluster, url))
}

/// Commits `oid` through `storage` in a thread; the outcome on `done`.
fn commit_in_thread(
    mut storage: impl Storage + 'static,
    oid: Oid,
) -> (mpsc::Receiver<Result<()>>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        storage.begin();
        let out = storage
            .store(oid, rec(oid, b"z", &[]))
            .and_then(|()| storage.end(&mut NoConflicts))
            .and_then(|d| d.wait());
        let _ = tx.send(out);
    });
    (rx, t)
}

/// X (hub A) writes oid 1, which it read; inside X's commit exchange, Z
/// writes oid 1 through hub B and Y (hub A) syncs. Both must not succeed.
#[test]
fn a_sync_by_another_session_does_not_hide_a_conflict() {
    let Some((_cluster, url)) = setup("hubs_race") else {
        return;
    };
    let (a, b) = (server(&url), server(&url));
    let mut x = a.storage();
    let y = a.session();
    let z = b.storage();
    let mut z_run = Some(z);
    let mut z_wait = None;
    let mut handler = Client {
        used: Oid(1),
        inside: Some(|| {
            let (rx, t) = commit_in_thread(z_run.take().expect("once"), Oid(1));
            // Z may finish now (it did before the fix) or wait for X's lock.
            let early = rx.recv_timeout(Duration::from_millis(500)).ok();
            y.sync().expect("Y syncs");
            z_wait = Some((rx, t, early));
        }),
    };
    x.begin();
    x.store(Oid(1), rec(Oid(1), b"x", &[])).expect("store");
    let x_out = x.end(&mut handler).and_then(|d| d.wait());
    // The closure's borrow of `z_wait` ends with the handler.
    let Client { inside, .. } = handler;
    assert!(inside.is_none(), "the exchange ran the interleaving");
    let (rx, t, early) = z_wait.expect("the exchange ran");
    let z_out = match early {
        Some(out) => out,
        None => rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Z finishes once X's commit is done"),
    };
    t.join().expect("Z's thread");
    assert!(
        !(x_out.is_ok() && z_out.is_ok()),
        "both commits of oid 1 were acknowledged: one update is lost"
    );
    assert!(
        x_out.is_ok() || z_out.is_ok(),
        "one of them should have committed: {x_out:?} {z_out:?}"
    );
}

/// X (hub A) writes oid 1 while Z commits oid 2 through hub B: both
/// commit (an invalidation of an object X did not use is no conflict).
#[test]
fn unrelated_commits_through_two_hubs_both_succeed() {
    let Some((_cluster, url)) = setup("hubs_disjoint") else {
        return;
    };
    let (a, b) = (server(&url), server(&url));
    let mut x = a.storage();
    x.sync().expect("sync");
    // Z commits oid 2 after X's sync point and before X's commit.
    let mut z = b.storage();
    commit(&mut z, vec![(Oid(2), rec(Oid(2), b"z", &[]))]);
    let mut handler = Client::<fn()> {
        used: Oid(1),
        inside: None,
    };
    x.begin();
    x.store(Oid(1), rec(Oid(1), b"x", &[])).expect("store");
    x.end(&mut handler)
        .and_then(|d| d.wait())
        .expect("an unrelated commit through the other hub is no conflict");
}

/// A hub's point loads run on a pool of sessions, outside the hub's state:
/// while a table lock holds every reader, three sessions' loads all wait
/// in PostgreSQL at once (one after another, only one would).
#[test]
fn loads_of_several_sessions_wait_in_postgresql_at_once() {
    let Some((_cluster, url)) = setup("hubs_pool") else {
        return;
    };
    let hub = server(&url);
    let db = url.rsplit('/').next().expect("database name").to_string();
    let mut admin = pg::Cluster::client(&url);
    let mut blocker = pg::Cluster::client(&url);
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE durus_object IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let loads: Vec<_> = (0..3)
        .map(|_| {
            let mut storage = hub.storage();
            thread::spawn(move || storage.load(Oid(1)))
        })
        .collect();
    let waiting = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db],
            )
            .expect("pg_stat_activity")
            .get(0)
    };
    let t0 = std::time::Instant::now();
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        seen = waiting(&mut admin);
        if seen >= 3 {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    tx.rollback().expect("unlock");
    for load in loads {
        let record = load.join().expect("load thread").expect("load");
        assert!(!record.is_empty());
    }
    assert!(seen >= 3, "only {seen} loads waited in PostgreSQL at once");
}
