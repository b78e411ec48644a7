//! Conflict resolution in process: merge rules applied at commit, through
//! the hub, and conflicts where the rules say so.

use durus_core::internals::SplitMix64;
use durus_core::persistent::merge::{self, Merge};
use durus_core::{per_key, Connection, Error, Hub, MemoryStorage, MergeConflict, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::thread;

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
struct Account {
    owner: String,
    #[merge(sum)]
    balance: i64,
    #[merge(union)]
    tags: BTreeSet<String>,
    #[merge(union)]
    limits: BTreeMap<String, i64>,
    #[merge(ours)]
    last_seen_by: String,
    #[merge(max)]
    high_water: i64,
    #[merge(nested)]
    stats: Stats,
    #[merge(with = longer)]
    note: String,
}

#[derive(Merge, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
struct Stats {
    #[merge(sum)]
    deposits: u32,
    #[merge(min)]
    first_day: u32,
}

#[allow(clippy::ptr_arg)] // merge functions take the field type by reference
fn longer(ours: &String, stored: &String, _: &String) -> Result<String, MergeConflict> {
    Ok(if stored.len() > ours.len() {
        stored.clone()
    } else {
        ours.clone()
    })
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Plain {
    value: i64,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    account: Option<PRef<Account>>,
    plain: Option<PRef<Plain>>,
}

fn setup() -> Hub {
    let hub = Hub::new(MemoryStorage::new());
    let conn = Connection::new(hub.storage());
    let root: PRef<Root> = conn.root().expect("root");
    {
        let mut r = root.write().expect("write");
        r.account = Some(PRef::new(Account {
            stats: Stats {
                deposits: 0,
                first_day: 100,
            },
            ..Account::default()
        }));
        r.plain = Some(PRef::new(Plain::default()));
    }
    conn.commit().expect("commit");
    hub
}

fn objects(conn: &Connection) -> (PRef<Account>, PRef<Plain>) {
    let root: PRef<Root> = conn.root().expect("root");
    let r = root.read().expect("read");
    (
        r.account.clone().expect("account"),
        r.plain.clone().expect("plain"),
    )
}

/// Two connections in one thread, interleaved by hand.
fn pair(hub: &Hub) -> (Connection, Connection) {
    (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    )
}

#[test]
fn every_rule_merges_two_concurrent_commits() -> durus_core::Result<()> {
    let hub = setup();
    let (a, b) = pair(&hub);
    let (acct_a, _) = objects(&a);
    let (acct_b, _) = objects(&b);
    {
        let mut w = acct_a.write()?;
        w.balance += 10;
        w.tags.insert("a".into());
        w.limits.insert("atm".into(), 100);
        w.last_seen_by = "a".into();
        w.high_water = 7;
        w.stats.deposits += 1;
        w.stats.first_day = 5;
        w.note = "short".into();
    }
    {
        let mut w = acct_b.write()?;
        w.balance -= 3;
        w.tags.insert("b".into());
        w.limits.insert("web".into(), 50);
        w.last_seen_by = "b".into();
        w.high_water = 9;
        w.stats.deposits += 2;
        w.stats.first_day = 7;
        w.note = "much longer".into();
        w.owner = "bea".into();
    }
    a.commit()?;
    b.commit()?; // merges with a's commit
    assert_eq!(b.merge_count(), 1);
    let c = Connection::new(hub.storage());
    let (acct, _) = objects(&c);
    let got = acct.read()?.clone();
    assert_eq!(got.balance, 7);
    assert_eq!(got.tags, ["a".to_string(), "b".to_string()].into());
    assert_eq!(
        got.limits,
        [("atm".to_string(), 100), ("web".to_string(), 50)].into()
    );
    assert_eq!(got.last_seen_by, "b");
    assert_eq!(got.high_water, 9);
    assert_eq!(
        got.stats,
        Stats {
            deposits: 3,
            first_day: 5
        }
    );
    assert_eq!(got.note, "much longer");
    assert_eq!(got.owner, "bea", "only b changed the three-way field");
    // b's in-memory object holds the merged state.
    assert_eq!(*acct_b.read()?, got);
    Ok(())
}

#[test]
fn an_unresolvable_field_is_a_conflict_and_leaves_the_object_alone() -> durus_core::Result<()> {
    let hub = setup();
    let (a, b) = pair(&hub);
    let (acct_a, _) = objects(&a);
    let (acct_b, _) = objects(&b);
    acct_b.read()?; // b's transaction starts from the initial state
    acct_a.write()?.owner = "ann".into();
    a.commit()?;
    {
        let mut w = acct_b.write()?;
        w.owner = "bob".into(); // both changed the three-way field differently
        w.balance += 5;
    }
    match b.commit() {
        Err(Error::Conflict(c)) => assert_eq!(c.oids, vec![acct_b.oid().expect("oid")]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The transaction needs an abort: nothing but abort is allowed.
    assert!(matches!(acct_b.read(), Err(Error::NeedsAbort)));
    assert!(matches!(b.commit(), Err(Error::NeedsAbort)));
    b.abort()?;
    assert_eq!(
        acct_b.read()?.owner,
        "ann",
        "the failed merge stored nothing"
    );
    assert_eq!(acct_b.read()?.balance, 0);
    b.transaction(3, |_| {
        acct_b.write()?.balance += 5;
        Ok(())
    })?;
    let c = Connection::new(hub.storage());
    let (acct, _) = objects(&c);
    assert_eq!(acct.read()?.owner, "ann");
    assert_eq!(acct.read()?.balance, 5);
    Ok(())
}

#[test]
fn a_read_of_a_resolvable_object_still_conflicts() -> durus_core::Result<()> {
    let hub = setup();
    let (a, b) = pair(&hub);
    let (acct_a, _) = objects(&a);
    let (acct_b, plain_b) = objects(&b);
    let seen = acct_b.read()?.balance; // b only reads the account
    acct_a.write()?.balance += 1;
    a.commit()?;
    plain_b.write()?.value = seen;
    assert!(matches!(b.commit(), Err(Error::Conflict(_))));
    Ok(())
}

#[test]
fn a_mixed_transaction_fails_cleanly_and_succeeds_on_retry() -> durus_core::Result<()> {
    let hub = setup();
    let (a, b) = pair(&hub);
    let (acct_a, plain_a) = objects(&a);
    let (acct_b, plain_b) = objects(&b);
    acct_b.read()?;
    plain_b.read()?;
    acct_a.write()?.balance += 1;
    plain_a.write()?.value += 1;
    a.commit()?;
    acct_b.write()?.balance += 10;
    plain_b.write()?.value += 10;
    match b.commit() {
        Err(Error::Conflict(c)) => assert_eq!(c.oids.len(), 2),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(b.merge_count(), 0);
    b.transaction(3, |_| {
        acct_b.write()?.balance += 10;
        plain_b.write()?.value += 10;
        Ok(())
    })?;
    let c = Connection::new(hub.storage());
    let (acct, plain) = objects(&c);
    assert_eq!(acct.read()?.balance, 11);
    assert_eq!(plain.read()?.value, 11);
    Ok(())
}

#[test]
fn sum_overflow_is_a_conflict() -> durus_core::Result<()> {
    let hub = setup();
    let (a, b) = pair(&hub);
    let (acct_a, _) = objects(&a);
    let (acct_b, _) = objects(&b);
    acct_b.read()?;
    acct_a.write()?.balance = i64::MAX;
    a.commit()?;
    acct_b.write()?.balance += 1;
    assert!(matches!(b.commit(), Err(Error::Conflict(_))));
    Ok(())
}

#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "test.Cached")]
struct Cached {
    #[merge(sum)]
    hits: i64,
    /// Computed by this client, never stored.
    #[serde(skip)]
    memo: Vec<i64>,
    #[merge(same)]
    archived: bool,
}

#[test]
fn a_field_serde_skips_keeps_ours_and_same_merges_equal_changes() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let (a, b) = pair(&hub);
    a.root::<Cached>()?;
    a.commit()?;
    let (ca, cb) = (a.root::<Cached>()?, b.root::<Cached>()?);
    // b computes its memo in one transaction; it stays in memory.
    cb.write()?.memo = vec![1, 2, 3];
    b.commit()?;
    ca.read()?;
    {
        let mut w = ca.write()?;
        w.hits += 1;
        w.archived = true;
    }
    a.commit()?;
    {
        let mut w = cb.write()?;
        w.hits += 2;
        w.archived = true;
    }
    b.commit()?;
    assert_eq!(b.merge_count(), 1);
    // Not merged three-way against the default the stored side decodes to.
    assert_eq!(
        *cb.read()?,
        Cached {
            hits: 3,
            memo: vec![1, 2, 3],
            archived: true
        }
    );
    Ok(())
}

#[test]
fn hot_counter_eight_threads_no_conflicts_no_lost_updates() {
    const THREADS: usize = 8;
    const INCREMENTS: usize = 1000;
    let hub = setup();
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (hub, start) = (hub.clone(), start.clone());
            thread::spawn(move || {
                let conn = Connection::new(hub.storage());
                let (acct, _) = objects(&conn);
                start.wait();
                let mut conflicts = 0;
                for _ in 0..INCREMENTS {
                    acct.write().expect("write").balance += 1;
                    if conn.commit().is_err() {
                        conflicts += 1;
                        conn.abort().expect("abort");
                    }
                }
                (conflicts, conn.merge_count())
            })
        })
        .collect();
    let results: Vec<(usize, u64)> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    let conflicts: usize = results.iter().map(|r| r.0).sum();
    assert_eq!(conflicts, 0, "no conflict reaches the application");
    let conn = Connection::new(hub.storage());
    let (acct, _) = objects(&conn);
    assert_eq!(
        acct.read().expect("read").balance,
        (THREADS * INCREMENTS) as i64
    );
}

/// A tiny deterministic generator for the property tests.
struct SplitMix(SplitMix64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn small(&mut self) -> i64 {
        (self.next() % 2001) as i64 - 1000
    }
    fn set(&mut self) -> BTreeSet<u8> {
        (0..self.next() % 8)
            .map(|_| (self.next() % 12) as u8)
            .collect()
    }
}

#[test]
fn property_rules_hold_for_random_inputs() {
    let mut rng = SplitMix(SplitMix64::new(42));
    for _ in 0..2000 {
        let (i, o, s) = (rng.small(), rng.small(), rng.small());
        // sum equals ours + stored - initial
        assert_eq!(merge::sum(&o, &s, &i), Ok(o + s - i));
        // an unchanged side takes the other
        assert_eq!(merge::three_way(&i, &s, &i), Ok(s));
        assert_eq!(merge::three_way(&o, &i, &i), Ok(o));
        assert_eq!(merge::sum(&i, &s, &i), Ok(s));
        // both changed, even to equal values: reported, never merged
        if o != i && s != i {
            assert!(merge::three_way(&o, &s, &i).is_err());
        }
        // `same` merges equal changes and nothing else
        if o != i && s != i {
            assert_eq!(merge::same(&o, &s, &i).is_ok(), o == s);
        } else {
            assert_eq!(merge::same(&o, &s, &i), merge::three_way(&o, &s, &i));
        }
        // union applies both sides' adds and removes
        let (si, so, ss) = (rng.set(), rng.set(), rng.set());
        let u = merge::union(&so, &ss, &si).expect("sets always merge");
        for x in 0..12u8 {
            let expect = if so.contains(&x) != si.contains(&x) {
                so.contains(&x)
            } else {
                ss.contains(&x)
            };
            let both_changed =
                so.contains(&x) != si.contains(&x) && ss.contains(&x) != si.contains(&x);
            if !both_changed {
                assert_eq!(u.contains(&x), expect, "{x} in {so:?} {ss:?} from {si:?}");
            } else {
                assert_eq!(u.contains(&x), so.contains(&x), "both made the same change");
            }
        }
        assert_eq!(merge::union(&si, &ss, &si), Ok(ss.clone()));
        // a map key changed on both sides is reported, even to equal values
        let mi: BTreeMap<u8, i64> = [(1, i)].into();
        let mo: BTreeMap<u8, i64> = [(1, o)].into();
        let ms: BTreeMap<u8, i64> = [(1, s)].into();
        let merged = merge::union(&mo, &ms, &mi);
        assert_eq!(merged.is_err(), o != i && s != i);
        assert_eq!(merge::union(&mo, &mo, &mi).is_err(), o != i);
        // per key: `same` merges equal values, `sum` adds both deltas
        let same = per_key::merge_map(&mo, &ms, &mi, per_key::same);
        assert_eq!(same.is_err(), o != i && s != i && o != s);
        let sum = per_key::merge_map(&mo, &ms, &mi, per_key::sum);
        assert_eq!(sum, Ok([(1, o + s - i)].into()));
    }
    assert!(merge::sum(&u8::MAX, &1, &0).is_err());
    assert!(merge::sum(&0u8, &0, &1).is_err());
}
