//! Storage servers for tests: in-process on a thread, or the `durus` binary
//! as a child process. Both bind loopback on a free port.

use durus_core::net::Address;
use durus_core::server::{Server, ServerConfig, ServerHandle};
use durus_core::{Hub, MemoryStorage};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// The `durus serve` binary as a child process; stopped with `Q`, or
/// killed by its pid if it does not exit in time.
pub struct ChildServer {
    pub child: Child,
    pub address: String,
    pub port: u16,
}

impl ChildServer {
    /// Runs `durus serve --port 0` plus `args`, and waits for its address.
    pub fn start(args: &[&str]) -> ChildServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_durus"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start durus serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("durus serve did not announce its address");
            }
        };
        let address = line
            .trim()
            .strip_prefix("serving on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let port = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        ChildServer {
            child,
            address,
            port,
        }
    }

    /// Sends `Q` and waits (bounded) for the process to exit; kills it by
    /// pid otherwise. Returns whether it exited by itself with success.
    pub fn stop(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        let address = Address::parse(&self.address).expect("address");
        let _ = durus_core::tools::stop(&address, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
