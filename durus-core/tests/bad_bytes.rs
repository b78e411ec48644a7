//! Random and mutated bytes in records: every load is a value or an
//! error, never a panic.

use durus_core::internals::LoadReply;
use durus_core::internals::SplitMix64;
use durus_core::{BTree, Connection, Hub, MemoryStorage, Oid, PRef, Persistent, PersistentDict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Persistent, Serialize, Deserialize, Default, Clone, PartialEq)]
#[persistent(class = "bad.Root")]
struct Root {
    name: String,
    #[merge(sum)]
    count: i64,
    tags: BTreeSet<String>,
    items: Vec<PRef<Root>>,
    index: BTree<u64, String>,
    dict: Option<PRef<PersistentDict<String, u32>>>,
}

#[test]
fn mutated_records_load_or_fail_cleanly() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    {
        let conn = Connection::new(hub.storage());
        let root: PRef<Root> = conn.root()?;
        {
            let mut r = root.write()?;
            r.name = "root".into();
            r.tags = ["a".to_string(), "b".to_string()].into();
            r.items.push(PRef::new(Root::default()));
            r.dict = Some(PRef::new(PersistentDict::new()));
        }
        let index = root.read()?.index.clone();
        for k in 0..40 {
            index.insert(k, format!("v{k}"))?;
        }
        conn.commit()?;
    }
    let session = hub.session();
    let originals: Vec<(Oid, Vec<u8>)> = (0..12)
        .filter_map(
            |n| match durus_core::internals::session_load(&session, Oid(n)) {
                Ok(LoadReply::Record(r)) => Some((Oid(n), r)),
                _ => None,
            },
        )
        .collect();
    assert!(originals.len() >= 5, "the graph has several records");
    let mut rng = SplitMix64::new(7);
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..300u32 {
        let mut records = Vec::new();
        for (oid, rec) in &originals {
            let mut bad = rec.clone();
            // Keep the oid and length prefix sane half of the time, so the
            // decoder (not only the framing check) sees the damage.
            // Keep the references too (only the data changes), or the
            // storage refuses the record before any decoder sees it.
            let start = if round.is_multiple_of(2) { 12 } else { 0 };
            let end = if round.is_multiple_of(2) {
                let data_len = u32::from_be_bytes([bad[8], bad[9], bad[10], bad[11]]) as usize;
                (12 + data_len).min(bad.len())
            } else {
                bad.len()
            };
            for _ in 0..1 + rng.next_u64() % 4 {
                if end > start {
                    let at = start + (rng.next_u64() as usize) % (end - start);
                    bad[at] = rng.next_u64() as u8;
                }
            }
            if !round.is_multiple_of(2) && rng.next_u64().is_multiple_of(5) {
                let cut = (rng.next_u64() as usize) % (bad.len() + 1);
                bad.truncate(cut);
            }
            records.push((*oid, bad));
        }
        // The hub refuses broken framing and references to oids it does
        // not hold; what it accepts must load or fail cleanly.
        if durus_core::internals::session_commit(&session, records).is_err() {
            refused += 1;
            continue;
        }
        let conn = Connection::new(hub.storage());
        match conn.get::<Root>(Oid::ROOT) {
            Ok(_) => loaded += 1,
            Err(_) => refused += 1,
        }
        if let Ok(root) = conn.get::<Root>(Oid::ROOT) {
            if let Ok(r) = root.read() {
                let index = r.index.clone();
                let items = r.items.clone();
                let dict = r.dict.clone();
                drop(r);
                let _ = index.len();
                let _ = index.iter().take(100).count();
                let _ = index.get(&7);
                for it in items {
                    let _ = it.read().map(|i| i.name.len());
                }
                if let Some(d) = dict {
                    let _ = d.read().map(|d| d.len());
                }
            }
        }
    }
    // Both outcomes happen, so the decoder saw damaged data it accepted
    // (e.g. changed text) and data it refused.
    assert!(
        loaded > 0 && refused > 0,
        "{loaded} loaded, {refused} refused"
    );
    Ok(())
}
