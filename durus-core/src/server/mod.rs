//! The storage server: a listener (TCP or Unix-domain) and one session per
//! client on a [`Hub`], speaking the Durus wire protocol (see
//! `docs/PROTOCOL.md`).
//!
//! Each client gets a thread with blocking I/O. Its socket has a short read
//! timeout (a tick) so that the thread notices a stop; a frame that has
//! started must complete within the client timeout, and so must a whole
//! commit exchange, since it holds the hub's commit: a client that stalls
//! there is dropped and its commit abandoned, and the others go on. Bad
//! input closes that client's session with a log line; the hub and the data
//! are not touched by it.

mod session;

use crate::error::Result;
use crate::hub::Hub;
use crate::lock;
pub use crate::net::{Address, UnixSocketOptions, DEFAULT_HOST, DEFAULT_PORT};
use crate::net::{Listener, Stream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// How long a started frame or a commit exchange may take by default.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many clients may be connected at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How often an idle session wakes to see whether the server is stopping.
const TICK: Duration = Duration::from_millis(500);

/// Stack of a session thread: sessions keep their buffers on the heap.
const SESSION_STACK: usize = 256 * 1024;

/// How a server listens and treats its clients.
///
/// ```
/// use durus_core::server::{Address, ServerConfig, UnixSocketOptions};
///
/// let config = ServerConfig {
///     address: Address::parse("/tmp/durus.sock")?,
///     unix: UnixSocketOptions {
///         umask: Some(0o077),
///         ..UnixSocketOptions::default()
///     },
///     gcbytes: 64 << 20, // pack after 64 MiB of commits
///     ..ServerConfig::default()
/// };
/// assert_eq!(config.address.to_string(), "/tmp/durus.sock");
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (default `127.0.0.1:2972`).
    pub address: Address,
    /// Owner, group and mode of a Unix-domain socket.
    pub unix: UnixSocketOptions,
    /// Pack in the background after this many bytes of records were
    /// committed; 0 never does.
    pub gcbytes: u64,
    /// How long a started frame, or a commit exchange, may take.
    pub client_timeout: Duration,
    /// Connections beyond this many are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Stop (and [`Server::serve`] fails) once a remote storage
    /// (PostgreSQL) has been unreachable this long, so that a supervisor
    /// can act; `None` keeps serving and reconnecting. The server checks
    /// its storage five times a second while this is set.
    pub storage_outage_limit: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: Address::tcp(DEFAULT_HOST, DEFAULT_PORT),
            unix: UnixSocketOptions::default(),
            gcbytes: 0,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            storage_outage_limit: None,
        }
    }
}

/// What the sessions of one server share.
struct Shared {
    hub: Hub,
    config: ServerConfig,
    stopping: AtomicBool,
    wake: Address,
    connections: AtomicUsize,
    packing: AtomicBool,
    bytes_since_pack: AtomicU64,
    pack_threads: Mutex<Vec<JoinHandle<()>>>,
    /// Sessions polling their socket for the next request right now.
    polling: Arc<AtomicUsize>,
    /// Why the server stopped by itself, if it did (`serve` fails with it).
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            info!("stopping");
            // Wake the accept loop: it sees the flag on the next connection.
            let _ = self.wake.connect();
        }
    }

    /// Counts committed bytes and starts a background pack past `gcbytes`.
    fn note_commit(self: &Arc<Self>) {
        let added = self.hub.take_bytes_committed();
        let total = self.bytes_since_pack.fetch_add(added, Ordering::Relaxed) + added;
        let gcbytes = self.config.gcbytes;
        if gcbytes == 0 || total < gcbytes || !self.start_packing() {
            return;
        }
        info!("{total} bytes committed since the last pack: packing in the background");
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("durus-pack".into())
            .spawn(move || {
                shared.pack();
                shared.done_packing();
            });
        match spawned {
            Ok(handle) => lock(&self.pack_threads).push(handle),
            Err(e) => {
                warn!("cannot start a background pack: {e}");
                self.done_packing();
            }
        }
    }

    /// Claims the pack: false when one is already running (a client's or
    /// the background one). Whoever claims it calls `done_packing` after.
    fn start_packing(&self) -> bool {
        !self.packing.swap(true, Ordering::SeqCst)
    }

    fn done_packing(&self) {
        self.packing.store(false, Ordering::SeqCst);
    }

    /// Packs now, in bounded steps between which commits go on, and resets
    /// the byte count.
    fn pack(&self) -> bool {
        let packed = loop {
            match self.hub.pack_step() {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        match packed {
            Ok(()) => {
                self.bytes_since_pack.store(0, Ordering::Relaxed);
                info!("pack done");
                true
            }
            Err(e) => {
                error!("pack failed: {e}");
                false
            }
        }
    }
}

/// A bound server, ready to [`serve`](Server::serve).
///
/// ```
/// use durus_core::server::{Address, Server, ServerConfig};
/// use durus_core::storage::ClientStorage;
/// use durus_core::{Connection, Hub, MemoryStorage, PRef, PersistentList};
///
/// let config = ServerConfig {
///     address: Address::tcp("127.0.0.1", 0), // any free port
///     ..ServerConfig::default()
/// };
/// let server = Server::bind(Hub::new(MemoryStorage::new()), config)?;
/// let address = server.local_address()?;
/// let handle = server.handle();
/// let running = std::thread::spawn(move || server.serve());
///
/// let conn = Connection::new(ClientStorage::connect_to(&address)?);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// root.write()?.push(1);
/// conn.commit()?;
/// drop(conn);
///
/// handle.stop();
/// running.join().expect("the server thread")?;
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

/// Stops a running server from another thread.
///
/// ```
/// use durus_core::server::{Address, Server, ServerConfig};
/// use durus_core::{Hub, MemoryStorage};
///
/// let config = ServerConfig {
///     address: Address::tcp("127.0.0.1", 0),
///     ..ServerConfig::default()
/// };
/// let server = Server::bind(Hub::new(MemoryStorage::new()), config)?;
/// let handle = server.handle();
/// let running = std::thread::spawn(move || server.serve());
/// handle.stop();
/// running.join().expect("the server thread")?;
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Asks the server to stop, as a client's `Q` does: it stops accepting,
    /// closes the sessions and the storage, and `serve` returns.
    pub fn stop(&self) {
        self.shared.stop();
    }

    /// The number of clients connected now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Server {
    /// Listens on `config.address` for clients of `hub`.
    pub fn bind(hub: Hub, config: ServerConfig) -> Result<Server> {
        let listener = Listener::bind(&config.address, &config.unix)?;
        let wake = listener.wake_address()?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                hub,
                config,
                stopping: AtomicBool::new(false),
                wake,
                connections: AtomicUsize::new(0),
                polling: Arc::new(AtomicUsize::new(0)),
                packing: AtomicBool::new(false),
                bytes_since_pack: AtomicU64::new(0),
                pack_threads: Mutex::new(Vec::new()),
                failure: Mutex::new(None),
            }),
        })
    }

    /// Where the server listens (the real port when port 0 was asked for).
    pub fn local_address(&self) -> Result<Address> {
        self.listener.local_address()
    }

    /// A handle to stop the server from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves clients until stopped (a `Q` or [`ServerHandle::stop`]); then
    /// waits for the sessions to end and closes the storage.
    pub fn serve(self) -> Result<()> {
        let Server { listener, shared } = self;
        if let Ok(addr) = listener.local_address() {
            info!("ready on {addr}");
        }
        let mut sessions: Vec<JoinHandle<()>> = Vec::new();
        let watchdog = shared.config.storage_outage_limit.and_then(|limit| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("durus-outage".into())
                .spawn(move || watch_storage(&shared, limit))
                .map_err(|e| warn!("cannot start the storage watchdog: {e}"))
                .ok()
        });
        loop {
            let accepted = listener.accept();
            if shared.stopping() {
                break;
            }
            match accepted {
                Ok((stream, peer)) => {
                    sessions.retain(|h| !h.is_finished());
                    if let Some(handle) = start_session(&shared, stream, peer) {
                        sessions.push(handle);
                    }
                }
                Err(e) => {
                    // Out of descriptors and the like: wait a little, go on.
                    warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        drop(listener);
        for h in sessions {
            let _ = h.join();
        }
        if let Some(h) = watchdog {
            let _ = h.join();
        }
        let packs: Vec<_> = lock(&shared.pack_threads).drain(..).collect();
        for h in packs {
            let _ = h.join();
        }
        let closed = shared.hub.close();
        info!("stopped");
        if let Some(why) = lock(&shared.failure).take() {
            return Err(crate::Error::Storage(crate::error::StorageError::Other(
                why,
            )));
        }
        closed
    }
}

/// Stops the server once the storage has been unreachable for `limit`,
/// checking five times a second. A thread of its own probes the storage
/// meanwhile (a sync of a session of its own, which notices an outage on
/// an idle server); a probe that waits (behind a pack, say) does not hold
/// up the check.
fn watch_storage(shared: &Arc<Shared>, limit: Duration) {
    let prober = Arc::clone(shared);
    let probing = std::thread::Builder::new()
        .name("durus-probe".into())
        .spawn(move || {
            let probe = prober.hub.session();
            while !prober.stopping() {
                std::thread::sleep(Duration::from_millis(200));
                if let Err(e) = probe.sync() {
                    debug!("storage check: {e}");
                }
            }
        })
        .map_err(|e| warn!("cannot start the storage probe: {e}"))
        .ok();
    while !shared.stopping() {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(down) = shared.hub.outage() {
            if down >= limit {
                let why = format!(
                    "the storage has been unreachable for {:.1} s (limit {:.1} s)",
                    down.as_secs_f64(),
                    limit.as_secs_f64()
                );
                error!("{why}: stopping");
                *lock(&shared.failure) = Some(why);
                shared.stop();
            }
        }
    }
    if let Some(h) = probing {
        let _ = h.join();
    }
}

/// Decrements the connection count when a session ends.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn start_session(shared: &Arc<Shared>, stream: Stream, peer: String) -> Option<JoinHandle<()>> {
    let max = shared.config.max_connections;
    if shared.connections.fetch_add(1, Ordering::SeqCst) >= max {
        shared.connections.fetch_sub(1, Ordering::SeqCst);
        warn!("refusing client {peer}: {max} clients are connected already");
        return None;
    }
    let counted = Counted(Arc::clone(shared));
    debug!("client {peer} connected");
    let spawned = std::thread::Builder::new()
        .name("durus-session".into())
        .stack_size(SESSION_STACK)
        .spawn(move || {
            let shared = Arc::clone(&counted.0);
            session::run(&shared, stream, &peer);
            drop(counted);
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            warn!("cannot start a session thread: {e}");
            None
        }
    }
}
