//! [`ClientStorage`]: a [`Storage`] that talks to a storage server (ours or
//! Python Durus's) over the wire protocol of [`crate::protocol`].

use super::{ClientTransaction, CommitHandler, Durability, Storage};
use crate::error::{Error, ProtocolError, Result, StorageError};
use crate::net::{Address, Polled, Stream};
use crate::oid::Oid;
use crate::protocol::{
    decode_fixed_oids, decode_oid_list, decode_status, decode_version, records_only,
    BulkLoadRequest, CommitAnswer, CommitRequest, FrameReader, LoadReply, LoadRequest,
    NewOidsRequest, PackRequest, ReadError, Request, SyncRequest, VersionRequest, WaitRequest,
    CLOSE_BYTE, MAX_BULK_OIDS, MAX_OID_LIST, MAX_WAIT_OIDS, PROTOCOL_VERSION, STATUS_INVALID,
    STATUS_OKAY,
};
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

/// How many oids are reserved per `M` request (as Durus's client).
const OID_BATCH: u8 = 32;

/// How many referenced records a load brings along in one bulk load: a
/// round trip costs far more than a record on loopback.
const PREFETCH: usize = 64;

/// How long a read of a reply polls before it blocks (see [`Polled`]).
const POLL: std::time::Duration = std::time::Duration::from_micros(50);

/// How often a client of a server without the wait extension (Python
/// Durus's) asks for its invalidations while it waits for change.
const POLL_FOR_CHANGE: Duration = Duration::from_millis(20);

/// The longest one `W` asks the server to wait when reads are not bounded.
const MAX_WAIT_SLICE: Duration = Duration::from_secs(60);

/// How long a client waits on its server, so that a server that is paused,
/// overloaded or unreachable fails a request instead of hanging it.
///
/// ```
/// use durus_core::storage::ClientOptions;
/// use std::time::Duration;
///
/// let patient = ClientOptions {
///     read_timeout: Some(Duration::from_secs(120)),
///     ..ClientOptions::default()
/// };
/// assert_eq!(patient.connect_timeout, Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The longest wait for a TCP connection (per address the host
    /// resolves to). `None`: the operating system's. Default: 10 s.
    pub connect_timeout: Option<Duration>,
    /// The longest wait for each answer, and for the server to take each
    /// request. A pack is not bounded (it may take long on a big file).
    /// `None`: wait forever. Default: 30 s.
    pub read_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A storage on a server. One client session; not shared between threads.
///
/// A request that times out (see [`ClientOptions`]) fails, and the session
/// is closed: its stream may be out of step. A commit whose transaction
/// was sent and not answered fails with [`Error::OutcomeUnknown`].
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
pub struct ClientStorage {
    address: Address,
    stream: Stream,
    reader: FrameReader<Polled<Stream>>,
    out: Vec<u8>,
    transaction: ClientTransaction,
    closed: bool,
    options: ClientOptions,
    /// The session was closed because the server did not answer in time.
    timed_out: bool,
    /// The server knows the wait extension (`W`); learnt at connection.
    waits: bool,
    /// Without it: invalidations taken from the server by a wait's polling
    /// and not yet handed to the connection (by `sync` or `end`); loads of
    /// them are refused as the server would.
    pending: HashSet<Oid>,
}

impl ClientStorage {
    /// Connects to `address` (`host:port` or a Unix socket path) and checks
    /// the protocol version, with the default [`ClientOptions`].
    pub fn connect(address: &str) -> Result<ClientStorage> {
        ClientStorage::connect_to(&Address::parse(address)?)
    }

    /// Connects to a parsed address, with the default [`ClientOptions`].
    pub fn connect_to(address: &Address) -> Result<ClientStorage> {
        ClientStorage::connect_to_with(address, ClientOptions::default())
    }

    /// Connects to `address` with these timeouts.
    pub fn connect_with(address: &str, options: ClientOptions) -> Result<ClientStorage> {
        ClientStorage::connect_to_with(&Address::parse(address)?, options)
    }

    /// Connects to a parsed address with these timeouts.
    ///
    /// After `V`, it probes for the wait extension (a `W` that waits 0 ms).
    /// A server without it (Python Durus's) closes the session: then it
    /// connects again and goes on in plain mode, where
    /// [`Storage::wait_for_change`] polls `S`.
    pub fn connect_to_with(address: &Address, options: ClientOptions) -> Result<ClientStorage> {
        let mut storage = ClientStorage::open(address, options)?;
        if storage.probe_wait()? {
            storage.waits = true;
            return Ok(storage);
        }
        tracing::debug!("server {address} has no wait extension: plain mode");
        ClientStorage::open(address, options)
    }

    /// True when the server knows the wait extension (`W`): a wait then
    /// blocks on the server instead of polling it.
    pub fn server_waits(&self) -> bool {
        self.waits
    }

    /// Sends the probe; `Ok(false)` when the server closed the session on it.
    fn probe_wait(&mut self) -> Result<bool> {
        self.send(&Request::Wait(WaitRequest {
            timeout_ms: 0,
            oids: Vec::new(),
        }))?;
        let deadline = self.options.read_timeout.map(crate::deadline);
        match self.reader.read_frame(decode_status, deadline) {
            Ok(STATUS_OKAY | STATUS_INVALID) => Ok(true),
            Ok(other) => {
                self.closed = true;
                Err(Error::Protocol(ProtocolError::Malformed(format!(
                    "wait probe answered with status byte {other:#04x}"
                ))))
            }
            Err(e) => {
                self.closed = true;
                let _ = self.stream.shutdown();
                match e {
                    ReadError::Closed | ReadError::Truncated { .. } => Ok(false),
                    ReadError::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        Ok(false)
                    }
                    other => Err(Error::io(
                        format!("probe server {}", self.address),
                        std::io::Error::other(other.to_string()),
                    )),
                }
            }
        }
    }

    /// Connects and checks the protocol version.
    fn open(address: &Address, options: ClientOptions) -> Result<ClientStorage> {
        let fail = |e| Error::io(format!("connect to {address}"), e);
        let stream = address
            .connect_within(options.connect_timeout)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    fail(silent(options.connect_timeout, "accept the connection"))
                }
                _ => fail(e),
            })?;
        // Socket timeouts wake blocked reads and writes; the deadline of
        // each request is checked in `read`.
        stream
            .set_read_timeout(options.read_timeout)
            .and_then(|()| stream.set_write_timeout(options.read_timeout))
            .map_err(fail)?;
        let read_half = stream.try_clone().map_err(fail)?;
        let mut storage = ClientStorage {
            address: address.clone(),
            stream,
            reader: FrameReader::new(Polled::new(read_half, POLL), None),
            out: Vec::with_capacity(4096),
            transaction: ClientTransaction::default(),
            closed: false,
            options,
            timed_out: false,
            waits: false,
            pending: HashSet::new(),
        };
        storage.send(&Request::Version(VersionRequest {
            version: PROTOCOL_VERSION,
        }))?;
        let theirs = storage.read(decode_version)?;
        if theirs != PROTOCOL_VERSION {
            return Err(Error::Protocol(ProtocolError::Version {
                ours: PROTOCOL_VERSION,
                theirs,
            }));
        }
        Ok(storage)
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::Storage(StorageError::Closed))
        } else {
            Ok(())
        }
    }

    fn send(&mut self, request: &Request) -> Result<()> {
        request.encode(&mut self.out);
        self.flush_out()
    }

    fn flush_out(&mut self) -> Result<()> {
        self.check_open()?;
        let r = (&self.stream).write_all(&self.out);
        self.out.clear();
        r.map_err(|e| {
            // Part of a frame may have gone: the session is out of step.
            self.closed = true;
            let e = match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    self.timed_out = true;
                    silent(self.options.read_timeout, "take the request")
                }
                _ => e,
            };
            Error::io(format!("send to server {}", self.address), e)
        })
    }

    fn read<T>(&mut self, decode: impl Fn(&[u8]) -> crate::protocol::Decoded<T>) -> Result<T> {
        let deadline = self.options.read_timeout.map(crate::deadline);
        let out = self.reader.read_frame(decode, deadline);
        // Whatever went wrong, the session is out of step: it is over.
        self.closed |= out.is_err();
        out.map_err(|e| match e {
            ReadError::TimedOut { .. } | ReadError::Idle => {
                self.timed_out = true;
                Error::io(
                    format!("read from server {}", self.address),
                    silent(self.options.read_timeout, "answer"),
                )
            }
            ReadError::Io(e) => Error::io(format!("read from server {}", self.address), e),
            ReadError::Malformed(why) => Error::Protocol(ProtocolError::Malformed(why)),
            other => Error::io(
                format!("read from server {}", self.address),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, other.to_string()),
            ),
        })
    }

    fn read_status(&mut self) -> Result<u8> {
        self.read(decode_status)
    }

    /// Reads the replies of `oids` in order (all of them, so that the
    /// stream stays in step even when some are errors).
    fn read_loads(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, LoadReply)>> {
        let mut out = Vec::with_capacity(oids.len());
        for oid in oids {
            out.push((*oid, self.read(LoadReply::decode)?));
        }
        Ok(out)
    }

    /// The server's `S`, without what polling took before.
    fn sync_server(&mut self) -> Result<Vec<Oid>> {
        self.send(&Request::Sync(SyncRequest))?;
        self.read(|b| decode_oid_list(b, MAX_OID_LIST))
    }

    /// Refuses a load of an oid polling found invalid, as the server would.
    fn check_pending(&self, oids: &[Oid]) -> Result<()> {
        match oids.iter().find(|oid| self.pending.contains(oid)) {
            Some(oid) => LoadReply::Invalid.into_record(*oid).map(|_| ()),
            None => Ok(()),
        }
    }

    /// A wait in plain mode: polls `S`, keeping what it returns for the
    /// connection's next `sync` or commit.
    fn poll_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        let deadline = crate::deadline(timeout);
        loop {
            let oids = self.sync_server()?;
            self.pending.extend(oids);
            let hit = match interest {
                None => !self.pending.is_empty(),
                Some(oids) => oids.iter().any(|oid| self.pending.contains(oid)),
            };
            if hit {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(POLL_FOR_CHANGE));
        }
    }

    /// Tells the server this client gives up its commit (an empty
    /// transaction ends the exchange).
    fn give_up(&mut self) -> Result<()> {
        CommitAnswer::Transaction(Vec::new()).encode(&mut self.out);
        self.flush_out()
    }
}

impl Storage for ClientStorage {
    fn commit_lock(&mut self) -> Option<std::sync::Arc<dyn crate::storage::CommitLock>> {
        // The server takes its own lock for a commit exchange.
        None
    }

    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        self.check_pending(&[oid])?;
        self.send(&Request::Load(LoadRequest { oid }))?;
        self.read(LoadReply::decode)?.into_record(oid)
    }

    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        self.check_pending(oids)?;
        let mut replies = Vec::with_capacity(oids.len());
        for chunk in oids.chunks(MAX_BULK_OIDS) {
            self.send(&Request::BulkLoad(BulkLoadRequest {
                oids: chunk.to_vec(),
            }))?;
            replies.extend(self.read_loads(chunk)?);
        }
        replies
            .into_iter()
            .map(|(oid, reply)| reply.into_record(oid))
            .collect()
    }

    fn prefetch_hint(&self) -> usize {
        PREFETCH
    }

    fn new_oid(&mut self) -> Result<Oid> {
        let mut transaction = std::mem::take(&mut self.transaction);
        let oid = transaction.new_oid(|| {
            self.send(&Request::NewOids(NewOidsRequest { count: OID_BATCH }))?;
            self.read(|b| decode_fixed_oids(b, usize::from(OID_BATCH)))
        });
        self.transaction = transaction;
        oid
    }

    fn begin(&mut self) {
        self.transaction.begin();
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        self.transaction.store(oid, record);
        Ok(())
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        self.send(&Request::Commit(CommitRequest))?;
        let mut invalidated = self.read(|b| decode_oid_list(b, MAX_OID_LIST))?;
        if !self.pending.is_empty() {
            // Taken from the server by a wait's polling: theirs as much.
            invalidated.extend(self.pending.drain());
            invalidated.sort_unstable();
            invalidated.dedup();
        }
        let mut transaction = std::mem::take(&mut self.transaction);
        let resolved = transaction.resolve(handler, &invalidated, |asked| {
            CommitAnswer::Resolve(asked.to_vec()).encode(&mut self.out);
            self.flush_out()?;
            Ok(records_only(self.read_loads(asked)?))
        });
        let records = transaction.take_records();
        self.transaction = transaction;
        if let Err(e) = resolved {
            self.give_up()?;
            return Err(e);
        }
        let oids: Vec<Oid> = records.iter().map(|(oid, _)| *oid).collect();
        CommitAnswer::Transaction(records).encode(&mut self.out);
        self.flush_out()?;
        if oids.is_empty() {
            return Ok(Durability::done());
        }
        // The server has the whole transaction: without its answer, no one
        // here can tell whether it stored it.
        let status = self.read_status().map_err(|e| {
            Error::OutcomeUnknown(format!("the server did not answer the commit: {e}"))
        })?;
        match status {
            STATUS_OKAY => Ok(Durability::done()),
            STATUS_INVALID => Err(Error::write_conflict(oids)),
            other => Err(Error::Protocol(ProtocolError::Malformed(format!(
                "commit answered with status byte {other:#04x}"
            )))),
        }
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        let mut oids = self.sync_server()?;
        if !self.pending.is_empty() {
            oids.extend(self.pending.drain());
            oids.sort_unstable();
            oids.dedup();
        }
        Ok(oids)
    }

    fn wait_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        self.check_open()?;
        if interest.is_some_and(<[Oid]>::is_empty) {
            return super::nothing_changes(timeout);
        }
        if !self.waits {
            return self.poll_for_change(timeout, interest);
        }
        // Too many oids for one request: any change counts.
        let oids = match interest {
            Some(oids) if oids.len() <= MAX_WAIT_OIDS => oids.to_vec(),
            _ => Vec::new(),
        };
        // Each request waits at most half the read timeout, so that its
        // answer is never taken for a silent server's.
        let slice = self.options.read_timeout.map_or(MAX_WAIT_SLICE, |t| {
            (t / 2).clamp(Duration::from_millis(1), MAX_WAIT_SLICE)
        });
        let deadline = crate::deadline(timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let this = left.min(slice);
            let timeout_ms = u32::try_from(this.as_micros().div_ceil(1000)).unwrap_or(u32::MAX);
            self.send(&Request::Wait(WaitRequest {
                timeout_ms,
                oids: oids.clone(),
            }))?;
            match self.read_status()? {
                STATUS_INVALID => return Ok(true),
                STATUS_OKAY if this >= left => return Ok(false),
                STATUS_OKAY => {}
                other => {
                    self.closed = true;
                    return Err(Error::Protocol(ProtocolError::Malformed(format!(
                        "wait answered with status byte {other:#04x}"
                    ))));
                }
            }
        }
    }

    fn change_notifier(&mut self) -> Option<std::sync::Arc<dyn super::ChangeNotifier>> {
        // The server wakes its sessions; another process's commits reach
        // it through its own storage.
        None
    }

    fn pack(&mut self) -> Result<()> {
        self.send(&Request::Pack(PackRequest))?;
        // A pack may take long on a big file: its answer is not bounded.
        let patient = self.options.read_timeout.take();
        self.stream
            .set_read_timeout(None)
            .map_err(|e| Error::io(format!("wait for server {}", self.address), e))?;
        let status = self.read_status();
        self.options.read_timeout = patient;
        // A session that cannot bound its reads again is not used again.
        if let Err(e) = self.stream.set_read_timeout(patient) {
            self.closed = true;
            return Err(Error::io(format!("wait for server {}", self.address), e));
        }
        match status? {
            STATUS_OKAY => Ok(()),
            other => Err(Error::Protocol(ProtocolError::Malformed(format!(
                "pack answered with status byte {other:#04x}"
            )))),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn timed_out(&self) -> bool {
        self.timed_out
    }

    fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.send(&Request::Close(CLOSE_BYTE))?;
        self.closed = true;
        let _ = self.stream.shutdown();
        Ok(())
    }
}

/// The error of a server that did not do `what` within `timeout`.
fn silent(timeout: Option<Duration>, what: &str) -> std::io::Error {
    let within = timeout.map_or_else(String::new, |t| format!(" within {t:?}"));
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the server did not {what}{within} (paused, overloaded or unreachable); \
             this session is closed"
        ),
    )
}

impl Drop for ClientStorage {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
