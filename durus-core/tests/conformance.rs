//! The conformance suite (tests/support/conformance.rs) over every storage.

mod support;

use durus_core::{Connection, FileStorage, Hub, MemoryStorage};
use support::{conformance, Scratch};

#[test]
fn memory_storage() -> durus_core::Result<()> {
    conformance::single(Connection::new(MemoryStorage::new()))
}

#[test]
fn in_process_hub() -> durus_core::Result<()> {
    let hub = Hub::new(MemoryStorage::new());
    conformance::single(Connection::new(hub.storage()))?;
    let hub = Hub::new(MemoryStorage::new());
    conformance::shared(&|| Connection::new(hub.storage()))
}

#[test]
fn file_storage() -> durus_core::Result<()> {
    let dir = Scratch::new("conformance-file");
    conformance::single(Connection::open(dir.path("single.durus"))?)?;
    let hub = Hub::new(FileStorage::open(dir.path("shared.durus"))?);
    conformance::shared(&|| Connection::new(hub.storage()))
}
