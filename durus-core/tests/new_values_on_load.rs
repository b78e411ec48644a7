//! A persistent value made while loading (a field added to a type since its
//! records were written, defaulting to a new `BTree` or `PRef`) is attached
//! to the transaction: what is put into it is stored by the next commit.

mod support;

use durus_core::{BTree, Connection, PRef, Persistent, Status};
use serde::{Deserialize, Serialize};

/// The root as the previous version of the program wrote it.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "shop.Root")]
struct RootV1 {
    name: String,
}

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Note {
    text: String,
}

/// The root after two fields were added.
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "shop.Root")]
struct RootV2 {
    name: String,
    #[serde(default)]
    customers: BTree<String, u64>,
    #[serde(default)]
    note: PRef<Note>,
}

#[test]
fn a_tree_added_to_a_type_keeps_what_is_put_into_it() -> durus_core::Result<()> {
    let dir = support::Scratch::new("new-on-load");
    let path = dir.path("shop.durus");
    {
        let conn = Connection::open(&path)?;
        let root: PRef<RootV1> = conn.root()?;
        root.write()?.name = "shop".into();
        conn.commit()?;
    }
    {
        let conn = Connection::open(&path)?;
        let root: PRef<RootV2> = conn.root()?;
        // Only reads of the root, as a program would do.
        let customers = root.read()?.customers.clone();
        assert_eq!(
            root.status(),
            Status::Unsaved,
            "the upgraded root is changed"
        );
        customers.insert("ann".into(), 1)?;
        root.read()?.note.write()?.text = "hello".into();
        conn.commit()?;
    }
    let conn = Connection::open(&path)?;
    let root: PRef<RootV2> = conn.root()?;
    assert_eq!(root.status(), Status::Saved, "stored with its new fields");
    let r = root.read()?;
    assert_eq!(r.name, "shop");
    assert_eq!(r.customers.get("ann")?, Some(1));
    assert_eq!(r.note.read()?.text, "hello");
    Ok(())
}

#[test]
fn an_upgraded_object_read_and_aborted_is_upgraded_again() -> durus_core::Result<()> {
    let dir = support::Scratch::new("new-on-load-abort");
    let path = dir.path("shop.durus");
    {
        let conn = Connection::open(&path)?;
        let root: PRef<RootV1> = conn.root()?;
        root.write()?.name = "shop".into();
        conn.commit()?;
    }
    let conn = Connection::open(&path)?;
    let root: PRef<RootV2> = conn.root()?;
    root.read()?.customers.insert("ann".into(), 1)?;
    conn.abort()?;
    assert!(root.read()?.customers.is_empty()?, "the abort dropped it");
    // A read-only use commits the upgrade (the empty tree) and nothing else.
    conn.commit()?;
    assert_eq!(root.status(), Status::Saved);
    Ok(())
}
