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
