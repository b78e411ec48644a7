//! Server addresses (TCP `host:port` or a Unix-domain socket path), the
//! connected stream and the listener: the socket edge shared by the server
//! and [`ClientStorage`](crate::storage::ClientStorage).

use crate::error::{Error, Result};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host a server listens on by default (loopback only, as Durus).
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The TCP port of Durus servers.
pub const DEFAULT_PORT: u16 = 2972;

/// Where a storage server listens.
///
/// ```
/// use durus_core::server::Address;
///
/// assert_eq!(Address::parse("localhost:2972")?, Address::tcp("localhost", 2972));
/// assert_eq!(Address::tcp("127.0.0.1", 2972).to_string(), "127.0.0.1:2972");
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A TCP host (name or IP) and port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port; 0 when binding means "any free port".
        port: u16,
    },
    /// A Unix-domain socket at this path.
    Unix(PathBuf),
}

impl Address {
    /// A TCP address.
    pub fn tcp(host: impl Into<String>, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`, `[v6-address]:port`, or a socket path (anything
    /// with a `/`, or that is not `host:port`).
    pub fn parse(text: &str) -> Result<Address> {
        if text.contains('/') {
            return Ok(Address::Unix(PathBuf::from(text)));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Ok(Address::Unix(PathBuf::from(text)));
        };
        let port: u16 = port.parse().map_err(|_| {
            Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad port in address {text:?}"),
            ))
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Address::tcp(host, port))
    }

    /// Connects to a server at this address (TCP with `TCP_NODELAY`).
    pub(crate) fn connect(&self) -> io::Result<Stream> {
        self.connect_within(None)
    }

    /// Connects, giving each TCP address the host resolves to at most
    /// `timeout` (a Unix socket connects or fails at once).
    pub(crate) fn connect_within(&self, timeout: Option<Duration>) -> io::Result<Stream> {
        match self {
            Address::Tcp { host, port } => {
                let stream = match timeout {
                    None => TcpStream::connect((host.as_str(), *port))?,
                    Some(t) => {
                        let mut last = None;
                        let mut found = None;
                        for addr in (host.as_str(), *port).to_socket_addrs()? {
                            match TcpStream::connect_timeout(&addr, t) {
                                Ok(s) => {
                                    found = Some(s);
                                    break;
                                }
                                Err(e) => last = Some(e),
                            }
                        }
                        match found {
                            Some(s) => s,
                            None => {
                                return Err(last.unwrap_or_else(|| {
                                    io::Error::new(
                                        io::ErrorKind::NotFound,
                                        format!("{host} resolves to no address"),
                                    )
                                }))
                            }
                        }
                    }
                };
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A connected socket, TCP or Unix-domain.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain.
    Unix(UnixStream),
}

impl Stream {
    /// A second handle on the same socket.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Sets the read timeout (`None`: block).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// Sets the write timeout (`None`: block).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    /// Shuts both directions down; blocked reads on other handles return.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Who may use a Unix-domain socket, as Durus's `--owner`, `--group`, `--umask`.
///
/// ```
/// use durus_core::server::UnixSocketOptions;
///
/// let options = UnixSocketOptions {
///     group: Some("durus".into()),
///     umask: Some(0o007),
///     ..UnixSocketOptions::default()
/// };
/// assert!(options.owner.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSocketOptions {
    /// Owner: a user name or numeric uid.
    pub owner: Option<String>,
    /// Group: a group name or numeric gid.
    pub group: Option<String>,
    /// Permission bits to clear on the socket file (e.g. `0o077`).
    pub umask: Option<u32>,
}

/// A listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix-domain, with its path (removed when the listener is dropped).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `address`. A Unix socket path left over by a server that is no
    /// longer running is replaced; a live one or a file that is not a socket
    /// is an error.
    pub fn bind(address: &Address, unix: &UnixSocketOptions) -> Result<Listener> {
        match address {
            Address::Tcp { host, port } => {
                let addrs: Vec<_> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| Error::io(format!("resolve {address}"), e))?
                    .collect();
                let listener = TcpListener::bind(addrs.as_slice())
                    .map_err(|e| Error::io(format!("listen on {address}"), e))?;
                Ok(Listener::Tcp(listener))
            }
            Address::Unix(path) => {
                let listener = bind_unix(path)?;
                let listener = Listener::Unix(listener, path.clone());
                set_socket_access(path, unix)?;
                Ok(listener)
            }
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_address(&self) -> Result<Address> {
        match self {
            Listener::Tcp(l) => {
                let a = l.local_addr().map_err(|e| Error::io("local address", e))?;
                Ok(Address::tcp(a.ip().to_string(), a.port()))
            }
            Listener::Unix(_, path) => Ok(Address::Unix(path.clone())),
        }
    }

    /// Accepts one connection; returns it and a description of the peer.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), path.display().to_string()))
            }
        }
    }

    /// An address that reaches this listener from this host (to wake `accept`).
    pub fn wake_address(&self) -> Result<Address> {
        match self.local_address()? {
            Address::Tcp { host, port } if host == "0.0.0.0" => Ok(Address::tcp("127.0.0.1", port)),
            Address::Tcp { host, port } if host == "::" => Ok(Address::tcp("::1", port)),
            other => Ok(other),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_unix(path: &Path) -> Result<UnixListener> {
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            if !is_socket || UnixStream::connect(path).is_ok() {
                return Err(Error::io(format!("listen on {}", path.display()), e));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("remove stale socket {}", path.display()), e))?;
            UnixListener::bind(path)
                .map_err(|e| Error::io(format!("listen on {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format!("listen on {}", path.display()), e)),
    }
}

fn set_socket_access(path: &Path, opts: &UnixSocketOptions) -> Result<()> {
    let ctx = |what: &str| format!("{what} of socket {}", path.display());
    if let Some(mask) = opts.umask {
        let mode = 0o777 & !mask;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(ctx("set mode"), e))?;
    }
    if opts.owner.is_some() || opts.group.is_some() {
        let uid = opts
            .owner
            .as_deref()
            .map(|o| lookup_id("/etc/passwd", o))
            .transpose()?;
        let gid = opts
            .group
            .as_deref()
            .map(|g| lookup_id("/etc/group", g))
            .transpose()?;
        std::os::unix::fs::chown(path, uid, gid).map_err(|e| Error::io(ctx("set owner"), e))?;
    }
    Ok(())
}

/// A numeric id, or the id of a name in `/etc/passwd` or `/etc/group`.
fn lookup_id(table: &str, name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(table).map_err(|e| Error::io(format!("read {table}"), e))?;
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let n = f.next()?;
            let id = f.nth(1)?;
            (n == name).then(|| id.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(|| {
            Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no {name:?} in {table}"),
            ))
        })
}

/// Reads that block at once after a poll found nothing in time.
pub const POLL_BACKOFF: u32 = 64;

/// Reads a stream, first polling it without blocking for a short while.
///
/// On a machine whose idle CPUs sleep (most virtual machines), waking the
/// CPU of a process blocked in `read` costs tens of microseconds, more than
/// the round trip itself. A reader that expects its peer to answer soon
/// polls for up to `spin` first. It adapts: after a poll that found
/// nothing in time, it blocks at once for the next [`POLL_BACKOFF`]
/// reads, so that a busy or idle peer costs no CPU.
pub struct Polled<S> {
    stream: S,
    spin: Duration,
    skip: u32,
    gate: Option<(std::sync::Arc<std::sync::atomic::AtomicUsize>, usize)>,
}

impl<S> Polled<S> {
    /// Polls `stream` for up to `spin` before each blocking read.
    pub fn new(stream: S, spin: Duration) -> Polled<S> {
        Polled {
            stream,
            spin,
            skip: 0,
            gate: None,
        }
    }

    /// Polls only while fewer than `most` readers sharing `polling` poll,
    /// so that many busy readers cannot take every CPU.
    pub fn gated(
        mut self,
        polling: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        most: usize,
    ) -> Polled<S> {
        self.gate = Some((polling, most));
        self
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: std::borrow::Borrow<Stream>> Read for Polled<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream: &Stream = self.stream.borrow();
        if self.spin.is_zero() || self.skip > 0 {
            self.skip = self.skip.saturating_sub(1);
            return (&*stream).read(buf);
        }
        use std::sync::atomic::Ordering;
        if let Some((polling, most)) = &self.gate {
            if polling.fetch_add(1, Ordering::AcqRel) >= *most {
                polling.fetch_sub(1, Ordering::AcqRel);
                return (&*stream).read(buf);
            }
        }
        let polled = poll(stream, self.spin, &mut self.skip, buf);
        if let Some((polling, _)) = &self.gate {
            polling.fetch_sub(1, Ordering::AcqRel);
        }
        polled
    }
}

/// Polls `stream` without blocking for up to `spin`, then blocks; a poll
/// that found nothing sets `skip` so the next reads block at once.
fn poll(stream: &Stream, spin: Duration, skip: &mut u32, buf: &mut [u8]) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let start = std::time::Instant::now();
    let polled = loop {
        match (&*stream).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() >= spin {
                    break None;
                }
                std::hint::spin_loop();
            }
            other => break Some(other),
        }
    };
    stream.set_nonblocking(false)?;
    match polled {
        Some(result) => result,
        None => {
            *skip = POLL_BACKOFF;
            (&*stream).read(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            Address::parse("127.0.0.1:2972").unwrap(),
            Address::tcp("127.0.0.1", 2972)
        );
        assert_eq!(Address::parse("[::1]:5").unwrap(), Address::tcp("::1", 5));
        assert_eq!(
            Address::parse("/tmp/durus.sock").unwrap(),
            Address::Unix("/tmp/durus.sock".into())
        );
        assert!(Address::parse("host:notaport").is_err());
        assert_eq!(Address::tcp("::1", 5).to_string(), "[::1]:5");
        assert_eq!(lookup_id("/etc/passwd", "root").unwrap(), 0);
    }

    #[test]
    fn polled_reads_get_early_and_late_bytes_and_back_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            peer.write_all(b"early").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            peer.write_all(b"late").unwrap();
        });
        let stream = Stream::Tcp(std::net::TcpStream::connect(addr).unwrap());
        let mut reader = Polled::new(&stream, Duration::from_millis(5));
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 9 {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"earlylate");
        // The late bytes came after the poll gave up: later reads block at once.
        assert!(reader.skip > 0 && reader.skip <= POLL_BACKOFF);
        writer.join().unwrap();
    }
}
