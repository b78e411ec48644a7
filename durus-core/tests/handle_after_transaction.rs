//! A handle kept past its transaction: a `Database` transaction's handle
//! refuses writes once the closure returned (nothing is dropped silently);
//! a plain `Connection` keeps Durus's model (the change waits for the
//! next commit).

use durus_core::{Connection, Database, Error, MemoryStorage, PRef, Persistent};
use serde::{Deserialize, Serialize};

#[derive(Persistent, Serialize, Deserialize, Default)]
struct Counter {
    hits: u64,
}

#[test]
fn database_handle_refuses_writes_after_its_transaction() {
    let db = Database::memory();
    let root: PRef<Counter> = db
        .transaction(|c| c.root::<Counter>())
        .expect("transaction");
    let err = root
        .write()
        .map(|_| ())
        .expect_err("a write after the transaction");
    assert!(matches!(err, Error::TransactionEnded { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Counter") && text.contains("ended"), "{text}");
    // Reading what was committed still works.
    assert_eq!(root.read().expect("read").hits, 0);

    // Inside the next transaction the same handle may be written again.
    db.transaction(|c| {
        let again: PRef<Counter> = c.root()?;
        assert!(again.ptr_eq(&root));
        root.write()?.hits += 1;
        Ok::<_, Error>(())
    })
    .expect("second transaction");
    let hits = db
        .transaction(|c| Ok::<_, Error>(c.root::<Counter>()?.read()?.hits))
        .expect("read");
    assert_eq!(hits, 1);
    // After an application error too, the handle is closed for writes.
    let failed: Result<(), Error> = db.transaction(|c| {
        c.root::<Counter>()?;
        Err(Error::NeedsAbort)
    });
    assert!(failed.is_err());
    assert!(root.write().is_err());
}

#[test]
fn plain_connection_keeps_changes_for_the_next_commit() {
    let conn = Connection::new(MemoryStorage::new());
    let root: PRef<Counter> = conn.root().expect("root");
    conn.commit().expect("commit");
    // Durus's model: after a commit the next transaction is already open.
    root.write().expect("write").hits = 5;
    conn.commit().expect("commit");
    conn.abort().expect("abort");
    assert_eq!(root.read().expect("read").hits, 5);
}
