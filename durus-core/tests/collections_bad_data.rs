//! Stored BTree nodes that break the tree's shape give errors, not panics.

use durus_core::collections::{BNode, BTreeState};
use durus_core::internals::{encoding, record};
use durus_core::storage::{NoConflicts, Storage};
use durus_core::{BTree, Connection, Error, Hub, MemoryStorage, Oid, PRef, Result};
use serde::Serialize;

/// A reference as the encoding writes it (CBOR tag 0x4455 around the oid).
type Ref = ciborium::tag::Required<u64, { encoding::REF_TAG }>;

#[derive(Serialize)]
struct FakeNode {
    items: Vec<(u64, String)>,
    nodes: Vec<Ref>,
}

/// Replaces the record of `oid` behind the connections' backs.
fn overwrite(hub: &Hub, oid: Oid, node: &FakeNode) -> Result<()> {
    let data = encoding::encode(Some(oid), "durus_core::collections::BNode", node)?;
    let refs: Vec<Oid> = node.nodes.iter().map(|r| Oid(r.0)).collect();
    let rec = record::pack(oid, &data, &refs)?;
    let mut storage = hub.storage();
    storage.begin();
    storage.store(oid, rec)?;
    storage.end(&mut NoConflicts)?.wait()
}

fn fresh_tree(hub: &Hub) -> Result<(Connection, BTree<u64, String>)> {
    let conn = Connection::new(hub.storage());
    let state: PRef<BTreeState<u64, String>> = conn.root()?;
    Ok((conn, BTree::from(state)))
}

fn is_data_error<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Encoding(_)))
}

#[test]
fn broken_nodes_are_errors() -> Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    let root_oid;
    let leaf_oid;
    {
        let (conn, tree) = fresh_tree(&hub)?;
        for k in 0..100 {
            tree.insert(k, k.to_string())?;
        }
        conn.commit()?;
        let root: PRef<BNode<u64, String>> = tree.state().read()?.root().clone();
        root_oid = root.oid().expect("stored");
        leaf_oid = root.read()?.children()[0].oid().expect("stored");
    }

    // An interior node with one child too few.
    overwrite(
        &hub,
        root_oid,
        &FakeNode {
            items: vec![(50, "x".into()), (70, "y".into())],
            nodes: vec![ciborium::tag::Required(leaf_oid.0)],
        },
    )?;
    let (_conn, tree) = fresh_tree(&hub)?;
    assert!(is_data_error(tree.get(&3)));
    assert!(is_data_error(tree.insert(3, String::new())));
    assert!(is_data_error(tree.remove(&3)));
    assert!(is_data_error(tree.iter().collect::<Result<Vec<_>>>()));
    assert!(is_data_error(tree.verify()));

    // A node that is its own child: a cycle.
    overwrite(
        &hub,
        root_oid,
        &FakeNode {
            items: vec![(50, "x".into())],
            nodes: vec![
                ciborium::tag::Required(root_oid.0),
                ciborium::tag::Required(root_oid.0),
            ],
        },
    )?;
    let (_conn, tree) = fresh_tree(&hub)?;
    assert!(is_data_error(tree.get(&3)));
    assert!(is_data_error(tree.first()));
    assert!(is_data_error(tree.depth()));
    assert!(is_data_error(tree.verify()));
    let mut steps = 0;
    for entry in tree.iter() {
        steps += 1;
        if entry.is_err() || steps > 10_000 {
            break;
        }
    }
    assert!(steps < 10_000, "the iteration ends with an error");

    // A record of another class where a node should be.
    let data = encoding::encode(Some(root_oid), "app.Other", &1u8)?;
    let mut storage = hub.storage();
    storage.begin();
    storage.store(root_oid, record::pack(root_oid, &data, &[])?)?;
    storage.end(&mut NoConflicts)?.wait()?;
    let (_conn, tree) = fresh_tree(&hub)?;
    assert!(is_data_error(tree.get(&3)));
    Ok(())
}
