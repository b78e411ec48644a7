//! The conformance suite (tests/support/conformance.rs) over `PgStorage`,
//! on a throwaway PostgreSQL cluster (tests/support/pg.rs).

mod support;

use durus_core::{Connection, Hub, PgStorage};
use support::{conformance, pg};

#[test]
fn one_client() -> durus_core::Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("single");
    conformance::single(Connection::new(PgStorage::connect(&url)?))
}

/// Every connection has its own `PgStorage`: no hub, as separate processes.
#[test]
fn clients_with_their_own_storage() -> durus_core::Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let url = cluster.new_database("direct");
    conformance::shared(&|| Connection::new(PgStorage::connect(&url).expect("connect")))
}

/// Connections in one process share one `PgStorage` through a hub.
#[test]
fn clients_through_a_hub() -> durus_core::Result<()> {
    let Some(cluster) = pg::cluster() else {
        return Ok(());
    };
    let hub = Hub::new(PgStorage::connect(&cluster.new_database("hub_single"))?);
    conformance::single(Connection::new(hub.storage()))?;
    let hub = Hub::new(PgStorage::connect(&cluster.new_database("hub_shared"))?);
    conformance::shared(&|| Connection::new(hub.storage()))
}
