//! Errors: one enum per layer, gathered under [`Error`].

use crate::oid::Oid;
use std::fmt;
use std::io;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error this crate returns.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A record's framing is broken.
    Record(RecordError),
    /// An object's state could not be encoded or decoded.
    Encoding(EncodingError),
    /// Another transaction changed objects this one used: abort and retry.
    Conflict(ConflictError),
    /// No object is stored under this oid.
    NotFound(Oid),
    /// The object is borrowed (a `read` or `write` guard is alive), so it
    /// cannot be written, stored or turned into a ghost now.
    Borrowed(Option<Oid>),
    /// The handle belongs to another connection, or to none when one is needed.
    WrongConnection(Option<Oid>),
    /// A commit was tried after a conflict without an `abort` first.
    NeedsAbort,
    /// The storage failed.
    Storage(StorageError),
    /// A peer broke the wire protocol.
    Protocol(ProtocolError),
    /// An I/O error outside any storage (sockets, files of tools).
    Io(io::Error),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictError {
    /// Write or read conflict.
    pub kind: ConflictKind,
    /// The oids that conflicted, sorted.
    pub oids: Vec<Oid>,
}

/// A record whose framing is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer than the 12 bytes of oid and length.
    Short { len: usize },
    /// The declared data length runs past the record's end.
    DataPastEnd {
        oid: Oid,
        data_len: usize,
        len: usize,
    },
    /// The refs part is not a whole number of oids.
    RefsNotOids { oid: Oid, len: usize },
    /// The data is longer than a u32 can declare.
    DataTooLong { oid: Oid, len: usize },
}

/// A state that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodingError {
    /// The record was written by Python Durus (a pickle); its class is shown.
    Foreign { oid: Oid, class: String },
    /// The record holds another class than the handle expects.
    WrongClass {
        oid: Oid,
        expected: String,
        found: String,
    },
    /// The data is not a valid encoded state for the type.
    Decode { oid: Oid, message: String },
    /// The state could not be encoded.
    Encode { oid: Option<Oid>, message: String },
}

/// A storage failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system I/O error, with what was being done.
    Io { context: String, source: io::Error },
    /// The storage is closed.
    Closed,
    /// The storage refuses writes (read-only, or after a failed write).
    ReadOnly(String),
    /// A storage-specific failure described in words.
    Other(String),
    /// Another writer holds the file's lock.
    Locked(String),
    /// The file's structure is broken at `offset`.
    Corrupt { offset: u64, message: String },
    /// The last transaction is incomplete (a write cut short, as by a power
    /// loss): it starts at `offset` and `bytes` bytes of it are on disk.
    TornTail {
        offset: u64,
        bytes: u64,
        message: String,
    },
    /// A commit was sent but its answer never came back (the connection to
    /// a database server was lost while it committed, or its COMMIT
    /// failed): the commit may or may not have been applied. Abort,
    /// reconnect, and look at the data before doing it again.
    CommitOutcomeUnknown(String),
}

/// A peer that broke the wire protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer sent something this side cannot accept.
    Malformed(String),
    /// The peer speaks another protocol version.
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Record(e) => e.fmt(f),
            Error::Encoding(e) => e.fmt(f),
            Error::Conflict(e) => e.fmt(f),
            Error::NotFound(oid) => write!(f, "no object with oid {oid}"),
            Error::Borrowed(Some(oid)) => write!(f, "object {oid} is borrowed"),
            Error::Borrowed(None) => write!(f, "a new object is borrowed"),
            Error::WrongConnection(Some(oid)) => {
                write!(f, "object {oid} belongs to another connection")
            }
            Error::WrongConnection(None) => write!(f, "object is not in any connection"),
            Error::NeedsAbort => write!(f, "still conflicted: call abort() before committing"),
            Error::Storage(e) => e.fmt(f),
            Error::Protocol(e) => e.fmt(f),
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl fmt::Display for ConflictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ConflictKind::Write => "conflict",
            ConflictKind::Read => "read conflict",
        };
        write!(f, "{kind} on oids {}", oid_list(&self.oids))
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short { len } => write!(f, "record of {len} bytes is shorter than 12"),
            RecordError::DataPastEnd { oid, data_len, len } => write!(
                f,
                "record {oid}: data length {data_len} runs past the record's {len} bytes"
            ),
            RecordError::RefsNotOids { oid, len } => {
                write!(
                    f,
                    "record {oid}: {len} bytes of refs is not a whole number of oids"
                )
            }
            RecordError::DataTooLong { oid, len } => {
                write!(
                    f,
                    "record {oid}: {len} bytes of data is over the 4 GiB limit"
                )
            }
        }
    }
}

impl fmt::Display for EncodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodingError::Foreign { oid, class } => write!(
                f,
                "object {oid} is a Python Durus record of class {class}, not a durus-rs record"
            ),
            EncodingError::WrongClass {
                oid,
                expected,
                found,
            } => write!(f, "object {oid} is a {found}, not a {expected}"),
            EncodingError::Decode { oid, message } => {
                write!(f, "object {oid}: cannot decode state: {message}")
            }
            EncodingError::Encode {
                oid: Some(oid),
                message,
            } => write!(f, "object {oid}: cannot encode state: {message}"),
            EncodingError::Encode { oid: None, message } => {
                write!(f, "new object: cannot encode state: {message}")
            }
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { context, source } => write!(f, "{context}: {source}"),
            StorageError::Closed => write!(f, "storage is closed"),
            StorageError::ReadOnly(why) => write!(f, "storage refuses writes: {why}"),
            StorageError::Other(why) => write!(f, "{why}"),
            StorageError::Locked(path) => {
                write!(f, "{path} is locked by another writer")
            }
            StorageError::Corrupt { offset, message } => {
                write!(f, "corrupt file at offset {offset}: {message}")
            }
            StorageError::TornTail {
                offset,
                bytes,
                message,
            } => write!(
                f,
                "torn last transaction at offset {offset} ({bytes} bytes to the end of the file): \
                 {message}; open with repair to truncate it"
            ),
            StorageError::CommitOutcomeUnknown(why) => write!(
                f,
                "commit outcome unknown (it may or may not have been applied): {why}"
            ),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed(what) => write!(f, "protocol error: {what}"),
            ProtocolError::Version { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak {ours}, the peer speaks {theirs}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(StorageError::Io { source, .. }) | Error::Io(source) => Some(source),
            _ => None,
        }
    }
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        Error::Record(e)
    }
}
impl From<EncodingError> for Error {
    fn from(e: EncodingError) -> Self {
        Error::Encoding(e)
    }
}
impl From<ConflictError> for Error {
    fn from(e: ConflictError) -> Self {
        Error::Conflict(e)
    }
}
impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}
impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
