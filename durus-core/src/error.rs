//! Errors: one enum per layer, gathered under [`Error`].

use crate::oid::Oid;
use std::io;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error this crate returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record's framing is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// An object's state could not be encoded or decoded.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// Another transaction changed objects this one used: abort and retry.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// No object is stored under this oid.
    #[error("no object with oid {0}")]
    NotFound(Oid),
    /// The object is borrowed (a `read` or `write` guard is alive), so it
    /// cannot be written, stored or turned into a ghost now.
    #[error("{}", borrowed(.0))]
    Borrowed(Option<Oid>),
    /// The handle belongs to another connection, or to none when one is needed.
    #[error("{}", wrong_connection(.0))]
    WrongConnection(Option<Oid>),
    /// The transaction needs an `abort` (after a conflict or a failed
    /// commit) before anything else.
    #[error("the transaction needs an abort (after a conflict or a failed commit)")]
    NeedsAbort,
    /// A commit failed at a point where it may have been stored (an fsync
    /// failed, the server went away before answering). What the storage
    /// holds tells; the storage refuses further commits until reopened.
    #[error("the commit may or may not have been stored: {0}")]
    OutcomeUnknown(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A peer broke the wire protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// An I/O error outside any storage (sockets, files of tools).
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
}

/// What kind of conflict happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Objects this transaction read or wrote were committed by someone else.
    Write,
    /// An object could not be loaded because its cached copy is obsolete.
    Read,
}

/// A conflict, with the oids involved. Abort and retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} on oids {}", conflict_kind(.kind), oid_list(.oids))]
pub struct ConflictError {
    /// Write or read conflict.
    pub kind: ConflictKind,
    /// The oids that conflicted, sorted.
    pub oids: Vec<Oid>,
}

/// A record whose framing is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer than the 12 bytes of oid and length.
    #[error("record of {len} bytes is shorter than 12")]
    Short { len: usize },
    /// The declared data length runs past the record's end.
    #[error("record {oid}: data length {data_len} runs past the record's {len} bytes")]
    DataPastEnd {
        oid: Oid,
        data_len: usize,
        len: usize,
    },
    /// The refs part is not a whole number of oids.
    #[error("record {oid}: {len} bytes of refs is not a whole number of oids")]
    RefsNotOids { oid: Oid, len: usize },
    /// The data is longer than a u32 can declare.
    #[error("record {oid}: {len} bytes of data is over the 4 GiB limit")]
    DataTooLong { oid: Oid, len: usize },
}

/// A state that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The record was written by Python Durus (a pickle); its class is shown.
    #[error("object {oid} is a Python Durus record of class {class}, not a durus-rs record")]
    Foreign { oid: Oid, class: String },
    /// The record holds another class than the handle expects.
    #[error("object {oid} is a {found}, not a {expected}")]
    WrongClass {
        oid: Oid,
        expected: String,
        found: String,
    },
    /// The data is not a valid encoded state for the type.
    #[error("object {oid}: cannot decode state: {message}")]
    Decode { oid: Oid, message: String },
    /// The state could not be encoded.
    #[error("{}: cannot encode state: {message}", object(.oid))]
    Encode { oid: Option<Oid>, message: String },
    /// The state does not fit the type: a field is missing, of another
    /// type, or unknown to a type that denies unknown fields.
    #[error("{}", state_error(.oid, .class, .field, .message))]
    State {
        oid: Oid,
        class: String,
        /// The top-level field, when it could be found.
        field: Option<String>,
        message: String,
    },
    /// Writing the object would drop fields of its record that its type
    /// does not know, so the write is refused.
    #[error(
        "{} ({class}): refusing to write it without the fields it was loaded with \
         that its type does not know ({}): {reason}",
        object(.oid),
        .fields.join(", ")
    )]
    UnknownFields {
        oid: Option<Oid>,
        class: String,
        fields: Vec<String>,
        reason: String,
    },
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// The storage is closed.
    #[error("storage is closed")]
    Closed,
    /// The storage refuses writes (read-only, or after a failed write).
    #[error("storage refuses writes: {0}")]
    ReadOnly(String),
    /// A storage-specific failure described in words.
    #[error("{0}")]
    Other(String),
    /// Another writer holds the file's lock.
    #[error("{0} is locked by another writer")]
    Locked(String),
    /// The file's structure is broken at `offset`.
    #[error("corrupt file at offset {offset}: {message}")]
    Corrupt { offset: u64, message: String },
    /// The last transaction is incomplete (a write cut short, as by a power
    /// loss): it starts at `offset` and `bytes` bytes of it are on disk.
    #[error(
        "torn last transaction at offset {offset} ({bytes} bytes to the end of the file): \
         {message}; open with repair to truncate it"
    )]
    TornTail {
        offset: u64,
        bytes: u64,
        message: String,
    },
}

/// A peer that broke the wire protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer sent something this side cannot accept.
    #[error("protocol error: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    Version { ours: u32, theirs: u32 },
}

impl Error {
    /// True for write and read conflicts: the transaction can be retried.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    pub(crate) fn write_conflict(mut oids: Vec<Oid>) -> Error {
        oids.sort_unstable();
        oids.dedup();
        Error::Conflict(ConflictError {
            kind: ConflictKind::Write,
            oids,
        })
    }

    pub(crate) fn read_conflict(oid: Oid) -> Error {
        Error::Conflict(ConflictError {
            kind: ConflictKind::Read,
            oids: vec![oid],
        })
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Storage(StorageError::Io {
            context: context.into(),
            source,
        })
    }
}

fn oid_list(oids: &[Oid]) -> String {
    let parts: Vec<String> = oids.iter().map(|o| o.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

fn conflict_kind(kind: &ConflictKind) -> &'static str {
    match kind {
        ConflictKind::Write => "conflict",
        ConflictKind::Read => "read conflict",
    }
}

fn borrowed(oid: &Option<Oid>) -> String {
    match oid {
        Some(oid) => format!("object {oid} is borrowed"),
        None => "a new object is borrowed".to_string(),
    }
}

fn wrong_connection(oid: &Option<Oid>) -> String {
    match oid {
        Some(oid) => format!("object {oid} belongs to another connection"),
        None => "object is not in any connection".to_string(),
    }
}

/// "object 7", or "new object" for one without an oid yet.
fn object(oid: &Option<Oid>) -> String {
    match oid {
        Some(oid) => format!("object {oid}"),
        None => "new object".to_string(),
    }
}

fn state_error(oid: &Oid, class: &str, field: &Option<String>, message: &str) -> String {
    match field {
        Some(field) => format!("object {oid} ({class}): field `{field}`: {message}"),
        None => format!("object {oid} ({class}): cannot decode state: {message}"),
    }
}
