//! One client's session: reads requests, answers them through a hub
//! [`Session`], and runs commit exchanges on a [`CommitExchange`].

use super::{Shared, TICK};
use crate::error::Error;
use crate::hub::{CommitExchange, Session};
use crate::net::{Polled, Stream};
use crate::protocol::{
    encode_oid_list, CommitAnswer, FrameReader, ReadError, Request, WaitRequest, PROTOCOL_VERSION,
    STATUS_INVALID, STATUS_OKAY,
};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Why a session ends.
enum End {
    /// The client closed, said goodbye, or the server is stopping.
    Quiet(String),
    /// The client misbehaved or something failed: worth a warning.
    Bad(String),
}

struct Client<'a> {
    shared: &'a Arc<Shared>,
    stream: &'a Stream,
    reader: FrameReader<Polled<&'a Stream>>,
    session: Session,
    out: Vec<u8>,
}

/// How long a session polls for its client's next request before it
/// blocks (see [`Polled`]): a client in a loop of requests answers within
/// this, and is then served without waking a sleeping CPU.
const POLL: Duration = Duration::from_micros(50);

/// At most this many sessions poll at once: one CPU is left to the rest.
fn polling_sessions() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// Serves one client until it leaves, misbehaves or the server stops.
pub(super) fn run(shared: &Arc<Shared>, stream: Stream, peer: &str) {
    let timeout = shared.config.client_timeout;
    if let Err(e) = stream
        .set_read_timeout(Some(TICK.min(timeout)))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
    {
        warn!("client {peer}: cannot set timeouts: {e}");
        return;
    }
    let mut client = Client {
        shared,
        stream: &stream,
        reader: FrameReader::new(
            Polled::new(&stream, POLL).gated(shared.polling.clone(), polling_sessions()),
            Some(timeout),
        ),
        session: shared.hub.session(),
        out: Vec::with_capacity(4096),
    };
    let end = loop {
        if shared.stopping() {
            break End::Quiet("server stopping".into());
        }
        let request = match client.reader.read_frame(Request::decode, None) {
            Ok(r) => r,
            Err(ReadError::Idle) => continue,
            Err(ReadError::Closed) => break End::Quiet("connection closed".into()),
            Err(e) => break End::Bad(e.to_string()),
        };
        if let Err(end) = client.handle(request) {
            break end;
        }
    };
    let _ = stream.shutdown();
    match end {
        End::Quiet(why) => debug!("client {peer} gone: {why}"),
        End::Bad(why) => warn!("closing client {peer}: {why}"),
    }
}

impl Client<'_> {
    fn send(&mut self) -> Result<(), End> {
        send(self.stream, &mut self.out)
    }

    fn handle(&mut self, request: Request) -> Result<(), End> {
        match request {
            Request::Version(v) => {
                self.out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
                self.send()?;
                if v.version != PROTOCOL_VERSION {
                    return Err(End::Bad(format!(
                        "client speaks protocol {}, we speak {PROTOCOL_VERSION}",
                        v.version
                    )));
                }
            }
            Request::NewOid(_) => self.new_oids(1)?,
            Request::NewOids(r) => self.new_oids(usize::from(r.count))?,
            Request::Load(r) => {
                let reply = self.session.load(r.oid).map_err(storage)?;
                reply.encode(&mut self.out);
                self.send()?;
            }
            Request::BulkLoad(r) => {
                let replies = self.session.bulk_load(&r.oids).map_err(storage)?;
                for reply in &replies {
                    reply.encode(&mut self.out);
                }
                self.send()?;
            }
            Request::Commit(_) => self.commit()?,
            Request::Sync(_) => {
                let oids = self.session.sync().map_err(storage)?;
                encode_oid_list(&oids, &mut self.out);
                self.send()?;
            }
            Request::Pack(_) => {
                let shared = self.shared;
                if shared.start_packing() {
                    info!("pack asked for by a client");
                    let ok = shared.pack();
                    shared.done_packing();
                    if !ok {
                        return Err(End::Bad("pack failed".into()));
                    }
                } else {
                    debug!("pack asked for while one runs");
                }
                self.out.push(STATUS_OKAY);
                self.send()?;
            }
            Request::Wait(r) => {
                let changed = self.wait(&r)?;
                self.out
                    .push(if changed { STATUS_INVALID } else { STATUS_OKAY });
                self.send()?;
            }
            Request::Quit(_) => {
                info!("quit asked for by a client");
                self.shared.stop();
                return Err(End::Quiet("quit".into()));
            }
            Request::Close(b'.') => return Err(End::Quiet("client closed".into())),
            Request::Close(b) => {
                return Err(End::Bad(format!("unknown command byte {b:#04x}")));
            }
        }
        Ok(())
    }

    /// Waits for this session's invalidations (the extension `W`), in
    /// slices of a tick so that a stopping server is noticed.
    fn wait(&mut self, r: &WaitRequest) -> Result<bool, End> {
        let deadline = crate::deadline(Duration::from_millis(u64::from(r.timeout_ms)));
        let interest = (!r.oids.is_empty()).then_some(r.oids.as_slice());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let changed = self
                .session
                .wait_for_change(left.min(TICK), interest)
                .map_err(storage)?;
            if changed || left <= TICK {
                return Ok(changed);
            }
            if self.shared.stopping() {
                return Err(End::Quiet("server stopping".into()));
            }
        }
    }

    fn new_oids(&mut self, count: usize) -> Result<(), End> {
        let oids = self.session.new_oids(count).map_err(storage)?;
        for oid in oids {
            self.out.extend_from_slice(&oid.to_bytes());
        }
        self.send()
    }

    /// The commit exchange: invalidations out, then resolution rounds, then
    /// the transaction, all within the client timeout.
    fn commit(&mut self) -> Result<(), End> {
        let Client {
            shared,
            stream,
            reader,
            session,
            out,
        } = self;
        let exchange = session.begin_commit().map_err(storage)?;
        let timeout = shared.config.client_timeout;
        let deadline = crate::deadline(timeout);
        encode_oid_list(exchange.invalidations(), out);
        send(stream, out)?;
        let records = loop {
            match reader.read_frame(CommitAnswer::decode, Some(deadline)) {
                Ok(CommitAnswer::Resolve(oids)) => {
                    let replies = exchange.load_current(&oids).map_err(storage)?;
                    for reply in &replies {
                        reply.encode(out);
                    }
                    send(stream, out)?;
                }
                Ok(CommitAnswer::Transaction(records)) => break records,
                Err(ReadError::TimedOut { .. }) | Err(ReadError::Idle) => {
                    return Err(End::Bad(format!(
                        "commit exchange took over {timeout:?}; commit dropped"
                    )));
                }
                Err(e) => {
                    return Err(End::Bad(format!(
                        "in a commit exchange: {e}; commit dropped"
                    )))
                }
            }
        };
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len();
        match commit_records(exchange, records) {
            Ok(()) => {
                debug!("committed {count} records");
                shared.note_commit();
                out.push(STATUS_OKAY);
            }
            Err(e) if e.is_conflict() => {
                debug!("commit refused: {e}");
                out.push(STATUS_INVALID);
            }
            Err(Error::Protocol(e)) => return Err(End::Bad(e.to_string())),
            Err(e) => return Err(End::Bad(format!("commit failed: {e}"))),
        }
        send(stream, out)
    }
}

/// Commits, releases the commit, then waits until the commit is durable.
fn commit_records(
    exchange: CommitExchange<'_>,
    records: Vec<(crate::Oid, Vec<u8>)>,
) -> crate::Result<()> {
    let durability = exchange.commit(records)?;
    durability.wait()
}

/// Writes `out` to the client and empties it.
fn send(stream: &Stream, out: &mut Vec<u8>) -> Result<(), End> {
    let r = (&*stream).write_all(out);
    out.clear();
    r.map_err(|e| End::Bad(format!("write failed: {e}")))
}

fn storage(e: Error) -> End {
    End::Bad(format!("storage error: {e}"))
}
