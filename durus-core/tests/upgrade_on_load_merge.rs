//! An object upgraded on load (a field added since its record was written,
//! defaulting to a new persistent value) by two clients at once: what each
//! puts into its new value is either stored or refused as a conflict, never
//! dropped by a merge that returned `Ok`.

use durus_core::{BTree, Connection, Hub, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};

/// The root as the previous version of the program wrote it.
#[derive(Persistent, Serialize, Deserialize, Default, Clone)]
#[persistent(class = "shop.Root")]
struct RootV1 {
    visits: i64,
}

/// The root after a field was added; `visits` merges, so the type does.
#[derive(Persistent, Serialize, Deserialize, Default, Clone)]
#[persistent(class = "shop.Root")]
struct RootV2 {
    #[merge(sum)]
    visits: i64,
    #[serde(default)]
    customers: BTree<String, u64>,
}

#[test]
fn two_clients_upgrading_one_object_keep_both_new_values_or_conflict() {
    let hub = Hub::new(MemoryStorage::new());
    {
        let conn = Connection::new(hub.storage());
        let root: PRef<RootV1> = conn.root().expect("root");
        root.write().expect("write").visits = 1;
        conn.commit().expect("commit");
    }
    let (a, b) = (
        Connection::new(hub.storage()),
        Connection::new(hub.storage()),
    );
    let root_a: PRef<RootV2> = a.root().expect("root a");
    let root_b: PRef<RootV2> = b.root().expect("root b");
    let customers_a = root_a.read().expect("read").customers.clone();
    let customers_b = root_b.read().expect("read").customers.clone();
    customers_a.insert("ann".into(), 1).expect("insert");
    customers_b.insert("bob".into(), 2).expect("insert");
    b.commit().expect("b commits");
    let a_outcome = a.commit();

    let check = Connection::new(hub.storage());
    let root: PRef<RootV2> = check.root().expect("root");
    let customers = root.read().expect("read").customers.clone();
    assert_eq!(customers.get("bob").expect("get"), Some(2), "b's commit");
    match a_outcome {
        Ok(()) => assert_eq!(
            customers.get("ann").expect("get"),
            Some(1),
            "a's commit returned Ok, so its insert is stored"
        ),
        Err(e) => assert!(e.is_conflict(), "{e:?}"),
    }
}
