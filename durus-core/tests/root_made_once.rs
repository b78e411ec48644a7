//! The first root commit of a shared storage fails and its client goes
//! away: another client can still make the root.

mod support;

use durus_core::{Connection, Hub, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};
use support::faults::{Faults, Faulty};

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Root {
    name: String,
}

#[test]
fn a_root_whose_first_commit_failed_can_be_made_by_another_client() {
    let (storage, faults) = Faulty::new(MemoryStorage::new());
    let hub = Hub::new(storage);
    {
        let first = Connection::new(hub.storage());
        Faults::arm(&faults.end);
        assert!(first.root::<Root>().is_err(), "the injected failure");
        first.abort().expect("abort");
    }
    let second = Connection::new(hub.storage());
    let root: PRef<Root> = second.root().expect("the root is made by the next client");
    root.write().expect("write").name = "made".into();
    second.commit().expect("commit");
}

/// Oid 0 is handed out again only while no root is stored: once one is,
/// no session gets it as a new oid (a new object there would overwrite
/// the root), whatever the storage's own counter says.
#[test]
fn oid_0_is_never_handed_out_once_the_root_is_stored() {
    use durus_core::Oid;
    let hub = Hub::new(MemoryStorage::new());
    // A client takes oid 0 alone (the storage's own counter is untouched)
    // and goes away; the root is then stored.
    let first = hub.session();
    assert_eq!(first.new_oids(1).expect("oid"), vec![Oid::ROOT]);
    drop(first);
    hub.with_storage(|s| {
        s.begin();
        s.store(Oid::ROOT, support::rec(Oid::ROOT, b"root", &[]))?;
        s.end(&mut durus_core::storage::NoConflicts)?.wait()
    })
    .expect("store the root");
    let second = hub.session();
    for _ in 0..3 {
        let oids = second.new_oids(1).expect("oid");
        assert!(!oids.contains(&Oid::ROOT), "{oids:?}");
    }
}
