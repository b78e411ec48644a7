//! The conformance suite (tests/support/conformance.rs) over every storage.

mod support;

use durus_core::{Connection, Hub, MemoryStorage};
use support::conformance;

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
