//! Client-to-server frames: one type per command, with its byte layout.

use super::{
    put_u32, take, wire_len, Cursor, Decoded, MAX_BULK_OIDS, MAX_RECORD_LEN, MAX_RESOLVE_OIDS,
    MAX_TRANSACTION_LEN, MAX_WAIT_OIDS,
};
use crate::oid::Oid;
use crate::record;

/// `V`: the protocol version check, the first thing a Durus client sends.
///
/// ```text
/// request: 'V' | version u32
/// reply:   version u32 (the server's); the server closes on a mismatch
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRequest {
    /// The client's protocol version.
    pub version: u32,
}

/// `N`: one new oid.
///
/// ```text
/// request: 'N'
/// reply:   oid (8)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOidRequest;

/// `M`: several new oids at once (Durus clients ask for 32).
///
/// ```text
/// request: 'M' | count u8
/// reply:   count × oid (8)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOidsRequest {
    /// How many oids to reserve.
    pub count: u8,
}

/// `L`: load one record.
///
/// ```text
/// request: 'L' | oid (8)
/// reply:   'O' | length u32 | record      the record
///        | 'K'                            no such oid
///        | 'I'                            the client must sync first
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadRequest {
    /// The oid to load.
    pub oid: Oid,
}

/// `B`: load several records in one round trip.
///
/// ```text
/// request: 'B' | count u32 | count × oid (8)
/// reply:   count × load reply (as for 'L'), in order
/// ```
/// `count` is at most [`MAX_BULK_OIDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkLoadRequest {
    /// The oids to load.
    pub oids: Vec<Oid>,
}

/// `C`: start a commit exchange.
///
/// ```text
/// request: 'C'
/// reply:   count u32 | count × oid (8)    oids invalidated since the last sync
/// then the client sends a CommitAnswer, possibly after resolution rounds
/// ```
/// See [`CommitAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRequest;

/// `S`: the oids invalidated for this client since it last synced.
///
/// ```text
/// request: 'S'
/// reply:   count u32 | count × oid (8)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRequest;

/// `P`: pack the storage.
///
/// ```text
/// request: 'P'
/// reply:   'O'
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackRequest;

/// `Q`: stop the server gracefully (no reply; the connection closes).
///
/// ```text
/// request: 'Q'
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuitRequest;

/// `W` (**extension**, durus-rs clients only): wait until this client has
/// invalidations it has not synced, or the timeout passes.
///
/// ```text
/// request: 'W' | timeout_ms u32 | count u32 | count × oid (8)
/// reply:   'I'   there are invalidations (of one of the oids, when count > 0)
///        | 'O'   none within the timeout
/// ```
/// The invalidations stay for the next `S` or `C`. `count` is at most
/// [`MAX_WAIT_OIDS`]; 0 means any oid. A `W` with timeout 0 is the probe a
/// client sends after `V` to learn whether the server knows `W` (Durus's
/// server closes the session on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRequest {
    /// The longest wait, in milliseconds.
    pub timeout_ms: u32,
    /// Only invalidations of these oids count; empty: any.
    pub oids: Vec<Oid>,
}

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `V`
    Version(VersionRequest),
    /// `N`
    NewOid(NewOidRequest),
    /// `M`
    NewOids(NewOidsRequest),
    /// `L`
    Load(LoadRequest),
    /// `B`
    BulkLoad(BulkLoadRequest),
    /// `C`
    Commit(CommitRequest),
    /// `S`
    Sync(SyncRequest),
    /// `P`
    Pack(PackRequest),
    /// `Q`
    Quit(QuitRequest),
    /// `W` (extension)
    Wait(WaitRequest),
    /// Any other byte (Durus clients send `.` when closing): ends the session.
    Close(u8),
}

impl Request {
    /// Decodes one request from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Decoded<Request> {
        let mut c = Cursor::new(buf);
        let command = take!(c.u8());
        let request = match command {
            b'V' => Request::Version(VersionRequest {
                version: take!(c.u32()),
            }),
            b'N' => Request::NewOid(NewOidRequest),
            b'M' => Request::NewOids(NewOidsRequest {
                count: take!(c.u8()),
            }),
            b'L' => Request::Load(LoadRequest {
                oid: take!(c.oid()),
            }),
            b'B' => {
                let count = take!(c.u32()) as usize;
                if count > MAX_BULK_OIDS {
                    return Decoded::Malformed(format!(
                        "bulk load of {count} oids is over the limit of {MAX_BULK_OIDS}"
                    ));
                }
                Request::BulkLoad(BulkLoadRequest {
                    oids: take!(c.oids(count)),
                })
            }
            b'C' => Request::Commit(CommitRequest),
            b'S' => Request::Sync(SyncRequest),
            b'P' => Request::Pack(PackRequest),
            b'Q' => Request::Quit(QuitRequest),
            b'W' => {
                let timeout_ms = take!(c.u32());
                let count = take!(c.u32()) as usize;
                if count > MAX_WAIT_OIDS {
                    return Decoded::Malformed(format!(
                        "wait for {count} oids is over the limit of {MAX_WAIT_OIDS}"
                    ));
                }
                Request::Wait(WaitRequest {
                    timeout_ms,
                    oids: take!(c.oids(count)),
                })
            }
            other => Request::Close(other),
        };
        Decoded::Frame(request, c.pos())
    }

    /// Appends the encoding of this request to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Version(r) => {
                out.push(b'V');
                put_u32(out, r.version);
            }
            Request::NewOid(_) => out.push(b'N'),
            Request::NewOids(r) => out.extend_from_slice(&[b'M', r.count]),
            Request::Load(r) => {
                out.push(b'L');
                out.extend_from_slice(&r.oid.to_bytes());
            }
            Request::BulkLoad(r) => {
                out.push(b'B');
                put_u32(out, wire_len(r.oids.len()));
                for oid in &r.oids {
                    out.extend_from_slice(&oid.to_bytes());
                }
            }
            Request::Commit(_) => out.push(b'C'),
            Request::Sync(_) => out.push(b'S'),
            Request::Pack(_) => out.push(b'P'),
            Request::Quit(_) => out.push(b'Q'),
            Request::Wait(r) => {
                out.push(b'W');
                put_u32(out, r.timeout_ms);
                put_u32(out, wire_len(r.oids.len()));
                for oid in &r.oids {
                    out.extend_from_slice(&oid.to_bytes());
                }
            }
            Request::Close(b) => out.push(*b),
        }
    }
}

/// What a client sends after the invalidation list of a commit exchange.
///
/// ```text
/// transaction: length u32 (0 <= length < 2^31) | length bytes of:
///                  n u32 (= 8 + record length) | oid (8) | record
///              length 0: the client gives up (a conflict); no reply
///              otherwise the reply is 'O' (committed) or 'I' (conflict)
/// resolve:     -count i32 (negative) | count × oid (8)      [extension]
///              reply: count × load reply (as for 'L'): the current records,
///              after which the client sends another CommitAnswer
/// ```
/// Durus clients only ever send a transaction. A record must be a valid
/// record (see `docs/RECORDS.md`) whose own oid is the one before it.
/// Limits: [`MAX_TRANSACTION_LEN`], [`MAX_RECORD_LEN`], [`MAX_RESOLVE_OIDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitAnswer {
    /// The records to commit; empty when the client abandons the commit.
    Transaction(Vec<(Oid, Vec<u8>)>),
    /// The extension: send the current records of these oids first.
    Resolve(Vec<Oid>),
}

impl CommitAnswer {
    /// Decodes a commit answer from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Decoded<CommitAnswer> {
        let mut c = Cursor::new(buf);
        let raw = take!(c.u32());
        let signed = raw as i32;
        if signed < 0 {
            let count = signed.unsigned_abs() as usize;
            if count > MAX_RESOLVE_OIDS {
                return Decoded::Malformed(format!(
                    "resolution request for {count} oids is over the limit of {MAX_RESOLVE_OIDS}"
                ));
            }
            let oids = take!(c.oids(count));
            return Decoded::Frame(CommitAnswer::Resolve(oids), c.pos());
        }
        let len = raw as usize;
        if len > MAX_TRANSACTION_LEN {
            return Decoded::Malformed(format!(
                "transaction of {len} bytes is over the limit of {MAX_TRANSACTION_LEN}"
            ));
        }
        let data = take!(c.bytes(len));
        match split_transaction(data) {
            Ok(records) => Decoded::Frame(CommitAnswer::Transaction(records), c.pos()),
            Err(why) => Decoded::Malformed(why),
        }
    }

    /// Appends the encoding of this answer to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CommitAnswer::Resolve(oids) => {
                let count = i32::try_from(oids.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&(-count).to_be_bytes());
                for oid in oids {
                    out.extend_from_slice(&oid.to_bytes());
                }
            }
            CommitAnswer::Transaction(records) => {
                let len: usize = records.iter().map(|(_, r)| 12 + r.len()).sum();
                put_u32(out, wire_len(len));
                for (oid, rec) in records {
                    put_u32(out, wire_len(8 + rec.len()));
                    out.extend_from_slice(&oid.to_bytes());
                    out.extend_from_slice(rec);
                }
            }
        }
    }
}

/// Splits a transaction's bytes into records, checking every length.
fn split_transaction(data: &[u8]) -> Result<Vec<(Oid, Vec<u8>)>, String> {
    let mut records = Vec::new();
    let mut c = Cursor::new(data);
    while c.pos() < data.len() {
        let at = c.pos();
        let truncated = |_| format!("transaction truncated at byte {at}");
        let n = c.u32::<()>().map_err(truncated)? as usize;
        if !(8..=MAX_RECORD_LEN + 8).contains(&n) {
            return Err(format!(
                "transaction entry at byte {at} declares {n} bytes (8 to {} allowed)",
                MAX_RECORD_LEN + 8
            ));
        }
        let oid = c.oid::<()>().map_err(truncated)?;
        let rec = c.bytes::<()>(n - 8).map_err(truncated)?;
        let view =
            record::unpack(rec).map_err(|e| format!("transaction record for oid {oid}: {e}"))?;
        if view.oid != oid {
            return Err(format!(
                "transaction names oid {oid} for a record of oid {}",
                view.oid
            ));
        }
        records.push((oid, rec.to_vec()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(r: Request) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(Request::decode(&out), Decoded::Frame(r.clone(), out.len()));
        for cut in 0..out.len() {
            assert!(matches!(Request::decode(&out[..cut]), Decoded::Need(n) if n > cut));
        }
    }

    #[test]
    fn requests_roundtrip_and_need_bytes() {
        roundtrip(Request::Version(VersionRequest { version: 1 }));
        roundtrip(Request::NewOid(NewOidRequest));
        roundtrip(Request::NewOids(NewOidsRequest { count: 32 }));
        roundtrip(Request::Load(LoadRequest { oid: Oid(7) }));
        roundtrip(Request::BulkLoad(BulkLoadRequest {
            oids: vec![Oid(1), Oid(2)],
        }));
        roundtrip(Request::Commit(CommitRequest));
        roundtrip(Request::Wait(WaitRequest {
            timeout_ms: 250,
            oids: vec![Oid(3)],
        }));
        roundtrip(Request::Wait(WaitRequest {
            timeout_ms: 0,
            oids: vec![],
        }));
        roundtrip(Request::Close(b'.'));
    }

    #[test]
    fn durus_byte_layouts() {
        let mut out = Vec::new();
        Request::Version(VersionRequest { version: 1 }).encode(&mut out);
        assert_eq!(out, b"V\x00\x00\x00\x01");
        out.clear();
        Request::BulkLoad(BulkLoadRequest {
            oids: vec![Oid(258)],
        })
        .encode(&mut out);
        assert_eq!(out, b"B\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01\x02");
    }

    #[test]
    fn over_limit_counts_are_malformed_before_the_bytes_arrive() {
        assert!(matches!(
            Request::decode(b"B\xff\xff\xff\xff"),
            Decoded::Malformed(_)
        ));
        assert!(matches!(
            Request::decode(b"W\x00\x00\x00\x01\xff\xff\xff\xff"),
            Decoded::Malformed(_)
        ));
        assert!(matches!(
            CommitAnswer::decode(b"\x7f\xff\xff\xff"),
            Decoded::Malformed(_)
        ));
        assert!(matches!(
            CommitAnswer::decode(&i32::MIN.to_be_bytes()),
            Decoded::Malformed(_)
        ));
    }

    #[test]
    fn commit_answers_roundtrip() {
        let rec = record::pack(Oid(3), b"data", &[Oid(1)]).unwrap();
        for a in [
            CommitAnswer::Transaction(vec![(Oid(3), rec.clone())]),
            CommitAnswer::Transaction(vec![]),
            CommitAnswer::Resolve(vec![Oid(3), Oid(9)]),
        ] {
            let mut out = Vec::new();
            a.encode(&mut out);
            assert_eq!(
                CommitAnswer::decode(&out),
                Decoded::Frame(a.clone(), out.len())
            );
        }
        // A record under the wrong oid, and an entry shorter than an oid.
        let mut out = Vec::new();
        CommitAnswer::Transaction(vec![(Oid(4), rec)]).encode(&mut out);
        assert!(matches!(CommitAnswer::decode(&out), Decoded::Malformed(_)));
        let bad = [0, 0, 0, 4, 0, 0, 0, 3];
        assert!(matches!(CommitAnswer::decode(&bad), Decoded::Malformed(_)));
    }
}
