//! The Durus storage-server wire protocol, version 1, byte-compatible with
//! Durus 4.3, plus the conflict-resolution extension of the commit exchange.
//!
//! Everything here is pure: decoders look at a byte slice and say
//! [`Decoded::Need`] (more bytes are needed), [`Decoded::Malformed`] or
//! [`Decoded::Frame`] (a value and how many bytes it used). Encoders append
//! to a `Vec<u8>`. The server and [`ClientStorage`](crate::storage::ClientStorage)
//! share them; [`FrameReader`] drives a decoder over any `Read`.
//!
//! Integers are big-endian. Declared lengths and counts are checked against
//! the limits below before anything is allocated for them, and buffers only
//! grow as bytes actually arrive. `docs/PROTOCOL.md` has the byte tables.

#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)
)]

mod reader;
mod reply;
mod request;

pub use reader::{FrameReader, ReadError};
pub use reply::{
    decode_fixed_oids, decode_oid_list, decode_status, decode_version, encode_oid_list,
    records_only, LoadReply,
};
pub use request::{
    BulkLoadRequest, CommitAnswer, CommitRequest, LoadRequest, NewOidRequest, NewOidsRequest,
    PackRequest, QuitRequest, Request, SyncRequest, VersionRequest, WaitRequest,
};

use crate::oid::Oid;

/// The protocol version this crate speaks (Durus 4.3 speaks 1).
pub const PROTOCOL_VERSION: u32 = 1;

/// Status byte: the request succeeded (a load is followed by the record).
pub const STATUS_OKAY: u8 = b'O';
/// Status byte: no record under that oid (Python's `KeyError`).
pub const STATUS_KEYERROR: u8 = b'K';
/// Status byte: the client's copy is obsolete (load) or the commit conflicted.
pub const STATUS_INVALID: u8 = b'I';

/// The byte Durus clients send when they close; any unknown command byte
/// ends the session the same way.
pub const CLOSE_BYTE: u8 = b'.';

/// The largest record accepted in a transaction or a load reply (64 MiB).
///
/// Durus has no limit; one this size is far beyond any object state a
/// client sensibly keeps in one record, and it bounds what one peer can make
/// the other buffer.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// The largest transaction accepted in one commit (256 MiB of records).
pub const MAX_TRANSACTION_LEN: usize = 256 << 20;

/// The most oids in one bulk load (`B`). Clients split larger loads.
pub const MAX_BULK_OIDS: usize = 1 << 16;

/// The most oids in one resolution request of the commit exchange.
pub const MAX_RESOLVE_OIDS: usize = 1 << 16;

/// The most oids of interest in one wait (`W`).
pub const MAX_WAIT_OIDS: usize = 1 << 16;

/// The most oids a client accepts in one invalidation or sync list
/// (64 Mi oids, 512 MiB): after a large pack the list can be long.
pub const MAX_OID_LIST: usize = 1 << 26;

/// The result of decoding from the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A value, and the number of bytes it took.
    Frame(T, usize),
    /// The buffer must hold at least this many bytes before decoding can go on.
    Need(usize),
    /// The bytes cannot be a valid frame; the text says why.
    Malformed(String),
}

/// A cursor over a buffer that yields `Need` when bytes run out.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Short-circuits a `Decoded` computation: `Need`/`Malformed` return early.
macro_rules! take {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(stop) => return stop,
        }
    };
}
pub(crate) use take;

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes, or `Need(pos + n)`.
    pub(crate) fn bytes<T>(&mut self, n: usize) -> Result<&'a [u8], Decoded<T>> {
        let end = self.pos.checked_add(n).ok_or(Decoded::Malformed(format!(
            "length {n} overflows the buffer"
        )))?;
        let out = self.buf.get(self.pos..end).ok_or(Decoded::Need(end))?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8<T>(&mut self) -> Result<u8, Decoded<T>> {
        let b = self.bytes(1)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    pub(crate) fn u32<T>(&mut self) -> Result<u32, Decoded<T>> {
        let b = self.bytes(4)?;
        let arr: [u8; 4] = b.try_into().unwrap_or_default();
        Ok(u32::from_be_bytes(arr))
    }

    pub(crate) fn oid<T>(&mut self) -> Result<Oid, Decoded<T>> {
        let b = self.bytes(8)?;
        Ok(Oid::from_slice(b).unwrap_or_default())
    }

    /// `count` packed oids; the caller has checked `count` against a limit.
    pub(crate) fn oids<T>(&mut self, count: usize) -> Result<Vec<Oid>, Decoded<T>> {
        let len = count
            .checked_mul(8)
            .ok_or(Decoded::Malformed(format!("{count} oids overflow")))?;
        let b = self.bytes(len)?;
        Ok(b.chunks_exact(8).filter_map(Oid::from_slice).collect())
    }
}

/// Appends a u32, big-endian.
pub(crate) fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes());
}

/// A length as the u32 the wire carries; lengths over the limits never get here.
pub(crate) fn wire_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
