//! Waiting for change on PostgreSQL: a `PgStorage` waits on LISTEN for
//! another client's commit (NOTIFY in the commit's transaction), and a hub
//! (a server) over PostgreSQL wakes its waiting sessions when another hub
//! (another server process) commits. A throwaway cluster
//! (tests/support/pg.rs).

mod support;

use durus_core::{Hub, Oid, PgStorage, Storage};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::{commit, pg, rec};

const LONG: Duration = Duration::from_secs(20);

/// A database whose root and one more object are stored; their oids.
fn setup(cluster: &pg::Cluster, name: &str) -> (String, Oid, Oid) {
    let url = cluster.new_database(name);
    let mut s = PgStorage::connect(&url).expect("connect");
    let root = s.new_oid().expect("oid");
    let other = s.new_oid().expect("oid");
    commit(
        &mut s,
        vec![
            (root, rec(root, b"root", &[other])),
            (other, rec(other, b"other", &[])),
        ],
    );
    (url, root, other)
}

/// Runs `rounds` times: `wait` in a thread (it reports when it starts and
/// then whether it woke), a commit through `commit` 150 ms later; the
/// delays from the end of each commit to the wake, sorted. With the wait's
/// fallback of looking every 500 ms, they would be about 250 ms.
fn wake_delays(
    rounds: usize,
    mut wait: impl FnMut() -> bool + Send + 'static,
    mut commit: impl FnMut(usize),
) -> Vec<Duration> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (woke_tx, woke_rx) = mpsc::channel::<(bool, Instant)>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let waiter = thread::spawn(move || {
        for _ in 0..rounds {
            if go_rx.recv_timeout(LONG).is_err() {
                return;
            }
            let _ = ready_tx.send(());
            let woke = wait();
            let _ = woke_tx.send((woke, Instant::now()));
        }
    });
    let mut delays = Vec::new();
    for round in 0..rounds {
        go_tx.send(()).expect("go");
        ready_rx.recv_timeout(LONG).expect("waiting");
        thread::sleep(Duration::from_millis(150));
        commit(round);
        let committed = Instant::now();
        let (woke, at) = woke_rx.recv_timeout(LONG).expect("woke");
        assert!(woke, "round {round}: the wait saw the commit");
        delays.push(at.saturating_duration_since(committed));
    }
    waiter.join().expect("waiter");
    delays.sort_unstable();
    delays
}

#[test]
fn a_pg_storage_waits_on_listen_for_another_clients_commit() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let (url, root, other) = setup(&cluster, "wait_direct");
    let mut waiter = PgStorage::connect(&url).expect("connect");
    let mut writer = PgStorage::connect(&url).expect("connect");
    // Nothing new; a change of `other` does not end a wait for the root.
    assert!(!waiter
        .wait_for_change(Duration::from_millis(50), None)
        .expect("wait"));
    commit(&mut writer, vec![(other, rec(other, b"o2", &[]))]);
    assert!(!waiter
        .wait_for_change(Duration::from_millis(50), Some(&[root]))
        .expect("wait"));
    assert!(waiter
        .wait_for_change(Duration::from_millis(50), Some(&[other]))
        .expect("wait"));
    // The wait took nothing: the sync reports it.
    assert_eq!(waiter.sync().expect("sync"), vec![other]);

    let delays = wake_delays(
        5,
        move || waiter.wait_for_change(LONG, Some(&[root])).expect("wait"),
        |round| {
            let data = format!("root {round}");
            commit(
                &mut writer,
                vec![(root, rec(root, data.as_bytes(), &[other]))],
            );
        },
    );
    let median = delays[delays.len() / 2];
    println!("PgStorage wake after another client's commit: median {median:?}, all {delays:?}");
    assert!(median < Duration::from_millis(100), "{delays:?}");
}

#[test]
fn a_hub_over_postgresql_wakes_its_sessions_when_another_hub_commits() {
    let Some(cluster) = pg::cluster() else {
        return;
    };
    let (url, root, other) = setup(&cluster, "wait_hubs");
    let first = Hub::new(PgStorage::connect(&url).expect("connect"));
    let second = Hub::new(PgStorage::connect(&url).expect("connect"));
    let waiting = first.session();
    assert!(!waiting
        .wait_for_change(Duration::from_millis(50), None)
        .expect("wait"));
    let mut writer = second.storage();
    let delays = wake_delays(
        5,
        move || {
            let woke = waiting.wait_for_change(LONG, Some(&[root])).expect("wait");
            // Taken, so that the next round waits again.
            assert!(waiting.sync().expect("sync").contains(&root));
            woke
        },
        |round| {
            let data = format!("root {round}");
            commit(
                &mut writer,
                vec![(root, rec(root, data.as_bytes(), &[other]))],
            );
        },
    );
    let median = delays[delays.len() / 2];
    println!("hub session wake after another hub's commit: median {median:?}, all {delays:?}");
    assert!(median < Duration::from_millis(100), "{delays:?}");
    first.close().expect("close");
    second.close().expect("close");
}
