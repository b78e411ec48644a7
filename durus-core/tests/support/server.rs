//! A storage server for tests, in-process on a thread, bound to loopback
//! on a free port. (The `durus` binary as a child process is in the
//! durus-cli crate's test support.)

use durus_core::server::Address;
use durus_core::server::{Server, ServerConfig, ServerHandle};
use durus_core::{Hub, MemoryStorage};
use std::thread::JoinHandle;

/// A server on a thread of this process, stopped on drop.
pub struct InProcess {
    pub address: Address,
    pub hub: Hub,
    handle: ServerHandle,
    thread: Option<JoinHandle<durus_core::Result<()>>>,
}

impl InProcess {
    /// A memory-backed server on 127.0.0.1 with a free port.
    pub fn start() -> InProcess {
        InProcess::with_config(|_| {})
    }

    /// As `start`, after `tweak` adjusts the configuration.
    pub fn with_config(tweak: impl FnOnce(&mut ServerConfig)) -> InProcess {
        InProcess::with_hub(Hub::new(MemoryStorage::new()), tweak)
    }

    /// A server for `hub`, after `tweak` adjusts the configuration.
    pub fn with_hub(hub: Hub, tweak: impl FnOnce(&mut ServerConfig)) -> InProcess {
        let mut config = ServerConfig {
            address: Address::tcp("127.0.0.1", 0),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let server = Server::bind(hub.clone(), config).expect("bind");
        let address = server.local_address().expect("address");
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.serve());
        InProcess {
            address,
            hub,
            handle,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> String {
        self.address.to_string()
    }

    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Stops the server and waits for `serve` to return.
    pub fn stop(&mut self) -> durus_core::Result<()> {
        self.handle.stop();
        match self.thread.take() {
            Some(t) => t.join().expect("server thread"),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
