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

#[test]
fn client_storage_over_tcp() -> durus_core::Result<()> {
    let server = support::server::InProcess::start();
    conformance::single(Connection::connect(&server.addr())?)?;
    let server = support::server::InProcess::start();
    let addr = server.addr();
    conformance::shared(&|| Connection::connect(&addr).expect("connect"))
}

#[test]
fn client_storage_over_unix_socket() -> durus_core::Result<()> {
    let dir = support::Scratch::new("conformance-unix");
    let serve = |name: &str| {
        let path = dir.path(name);
        support::server::InProcess::with_config(|c| {
            c.address = durus_core::server::Address::Unix(path);
        })
    };
    let server = serve("single.sock");
    conformance::single(Connection::connect(&server.addr())?)?;
    let server = serve("shared.sock");
    let addr = server.addr();
    conformance::shared(&|| Connection::connect(&addr).expect("connect"))
}
