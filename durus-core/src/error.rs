//! Errors: one enum per layer, gathered under [`Error`].

use crate::oid::Oid;
use std::io;

/// The result type of this crate.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentDict, Result};
///
/// fn entries(conn: &Connection) -> Result<usize> {
///     let root: PRef<PersistentDict<String, u32>> = conn.root()?;
///     let n = root.read()?.len();
///     Ok(n)
/// }
///
/// assert_eq!(entries(&Connection::new(MemoryStorage::new()))?, 0);
/// # Ok::<(), durus_core::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error this crate returns.
///
/// ```
/// use durus_core::{Connection, Error, Hub, MemoryStorage, PRef, PersistentList};
///
/// let hub = Hub::new(MemoryStorage::new());
/// let (a, b) = (Connection::new(hub.storage()), Connection::new(hub.storage()));
/// let list_a: PRef<PersistentList<u32>> = a.root()?;
/// a.commit()?;
/// let list_b: PRef<PersistentList<u32>> = b.root()?;
/// list_a.write()?.push(1);
/// list_b.write()?.push(2);
/// a.commit()?;
/// // Lists have no merge rule: the second commit of the same list conflicts.
/// let err = b.commit().unwrap_err();
/// assert!(matches!(err, Error::Conflict(_)));
/// assert!(err.is_conflict());
/// b.abort()?;
/// assert_eq!(list_b.read()?.as_vec(), &[1]);
/// # Ok::<(), durus_core::Error>(())
/// ```
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
    /// A handle from [`Database::transaction`](crate::Database::transaction)
    /// was written after its transaction ended: the change could never be
    /// committed, so the write is refused rather than dropped.
    #[error(
        "{} ({class}): cannot write it, the Database transaction it was taken in has ended; \
         take it again inside a new transaction",
        object(.oid)
    )]
    TransactionEnded {
        /// The object, when it has an oid.
        oid: Option<Oid>,
        /// The class of the object.
        class: String,
    },
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
///
/// ```
/// use durus_core::{ConflictError, ConflictKind, Oid};
///
/// let e = ConflictError {
///     kind: ConflictKind::Read,
///     oids: vec![Oid(7)],
///     details: Vec::new(),
/// };
/// assert_eq!(e.to_string(), "read conflict on oids [7]");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Objects this transaction read or wrote were committed by someone else.
    Write,
    /// An object could not be loaded because its cached copy is obsolete.
    Read,
}

/// A conflict, with the oids involved and, where the connection knows
/// them, each object's class and why it conflicted. Abort and retry.
///
/// ```
/// use durus_core::{ConflictDetail, ConflictError, ConflictKind, ConflictReason, Error, Oid};
///
/// let e = Error::from(ConflictError {
///     kind: ConflictKind::Write,
///     oids: vec![Oid(3), Oid(17)],
///     details: vec![ConflictDetail {
///         oid: Oid(3),
///         class: Some("shop.Item".into()),
///         reason: ConflictReason::Read,
///     }],
/// });
/// assert!(e.is_conflict());
/// assert_eq!(
///     e.to_string(),
///     "conflict on oids [3, 17]: 3 (shop.Item) was read by this transaction and changed by another"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} on oids {}{}", conflict_kind(.kind), oid_list(.oids), detail_list(.details))]
pub struct ConflictError {
    /// Write or read conflict.
    pub kind: ConflictKind,
    /// The oids that conflicted, sorted.
    pub oids: Vec<Oid>,
    /// The class and reason of each oid the connection could explain (a
    /// storage alone knows neither).
    pub details: Vec<ConflictDetail>,
}

/// One conflicting object: its class and why it conflicted, so that the
/// user knows which rule would have merged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictDetail {
    /// The object.
    pub oid: Oid,
    /// Its class, when the connection holds it.
    pub class: Option<String>,
    /// Why it conflicted.
    pub reason: ConflictReason,
}

/// Why an object conflicted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictReason {
    /// This transaction read it (without writing it) and another client
    /// changed it: what this transaction did may rest on a stale value.
    Read,
    /// Both sides wrote it and its type has no merge rule.
    NoRule,
    /// A merge rule refused: the field and why (a bound crossed, a field
    /// changed on both sides, a merge function's own error).
    MergeRefused(crate::persistent::MergeConflict),
    /// Anything else, in words.
    Other(String),
}

impl std::fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictReason::Read => {
                write!(f, "was read by this transaction and changed by another")
            }
            ConflictReason::NoRule => {
                write!(
                    f,
                    "was written on both sides and its type has no merge rule"
                )
            }
            ConflictReason::MergeRefused(m) => write!(f, "{m}"),
            ConflictReason::Other(why) => write!(f, "{why}"),
        }
    }
}

/// A record whose framing is broken.
///
/// ```
/// use durus_core::error::{Error, RecordError};
///
/// let e = Error::from(RecordError::Short { len: 3 });
/// assert_eq!(e.to_string(), "record of 3 bytes is shorter than 12");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer than the 12 bytes of oid and length.
    #[error("record of {len} bytes is shorter than 12")]
    Short {
        /// The record's length.
        len: usize,
    },
    /// The declared data length runs past the record's end.
    #[error("record {oid}: data length {data_len} runs past the record's {len} bytes")]
    DataPastEnd {
        /// The record's oid.
        oid: Oid,
        /// The declared data length.
        data_len: usize,
        /// The record's length.
        len: usize,
    },
    /// The refs part is not a whole number of oids.
    #[error("record {oid}: {len} bytes of refs is not a whole number of oids")]
    RefsNotOids {
        /// The record's oid.
        oid: Oid,
        /// The length of the refs part.
        len: usize,
    },
    /// The data is longer than a u32 can declare.
    #[error("record {oid}: {len} bytes of data is over the 4 GiB limit")]
    DataTooLong {
        /// The record's oid.
        oid: Oid,
        /// The data's length.
        len: usize,
    },
}

/// A state that could not be encoded or decoded.
///
/// ```
/// use durus_core::error::EncodingError;
/// use durus_core::Oid;
///
/// let e = EncodingError::WrongClass {
///     oid: Oid(4),
///     expected: "shop.Item".into(),
///     found: "shop.Order".into(),
/// };
/// assert_eq!(e.to_string(), "object 4 is a shop.Order, not a shop.Item");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The record was written by Python Durus (a pickle); its class is shown.
    #[error("object {oid} is a Python Durus record of class {class}, not a durus-rs record")]
    Foreign {
        /// The object.
        oid: Oid,
        /// The Python class named in the pickle.
        class: String,
    },
    /// The record holds another class than the handle expects.
    #[error("object {oid} is a {found}, not a {expected}")]
    WrongClass {
        /// The object.
        oid: Oid,
        /// The class of the handle's type.
        expected: String,
        /// The class in the record.
        found: String,
    },
    /// The data is not a valid encoded state for the type.
    #[error("object {oid}: cannot decode state: {message}")]
    Decode {
        /// The object.
        oid: Oid,
        /// What the decoder said.
        message: String,
    },
    /// The state could not be encoded.
    #[error("{}: cannot encode state: {message}", object(.oid))]
    Encode {
        /// The object, when it has an oid yet.
        oid: Option<Oid>,
        /// What the encoder said.
        message: String,
    },
    /// The state does not fit the type: a field is missing, of another
    /// type, or unknown to a type that denies unknown fields.
    #[error("{}", state_error(.oid, .class, .field, .message))]
    State {
        /// The object.
        oid: Oid,
        /// The class of the record.
        class: String,
        /// The top-level field, when it could be found.
        field: Option<String>,
        /// What the decoder said.
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
        /// The object, when it has an oid yet.
        oid: Option<Oid>,
        /// The class of the object.
        class: String,
        /// The fields its type does not know.
        fields: Vec<String>,
        /// Why they cannot be kept.
        reason: String,
    },
}

/// A storage failure.
///
/// ```
/// use durus_core::error::{Error, StorageError};
/// use durus_core::FileStorage;
///
/// let path = std::env::temp_dir().join(format!("doc-locked-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let first = FileStorage::open(&path)?;
/// let second = FileStorage::open(&path);
/// assert!(matches!(second, Err(Error::Storage(StorageError::Locked(_)))));
/// drop(first);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
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
    Corrupt {
        /// Where in the file.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The last transaction is incomplete (a write cut short, as by a power
    /// loss): it starts at `offset` and `bytes` bytes of it are on disk.
    #[error(
        "{path}: torn last transaction at offset {offset} ({bytes} bytes to the end of the \
         file): {message}; `durus repair {path}` cuts it"
    )]
    TornTail {
        /// The file.
        path: String,
        /// Where the torn transaction starts.
        offset: u64,
        /// How many of its bytes are on disk.
        bytes: u64,
        /// What is wrong with them.
        message: String,
    },
}

/// A peer that broke the wire protocol.
///
/// ```
/// use durus_core::error::ProtocolError;
///
/// let e = ProtocolError::Version { ours: 1, theirs: 2 };
/// assert_eq!(
///     e.to_string(),
///     "protocol version mismatch: we speak 1, the peer speaks 2"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer sent something this side cannot accept.
    #[error("protocol error: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    Version {
        /// The version this side speaks.
        ours: u32,
        /// The version the peer speaks.
        theirs: u32,
    },
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
            details: Vec::new(),
        })
    }

    pub(crate) fn read_conflict(oid: Oid) -> Error {
        Error::Conflict(ConflictError {
            kind: ConflictKind::Read,
            oids: vec![oid],
            details: Vec::new(),
        })
    }

    /// A write conflict on one object, explained.
    pub(crate) fn explained_conflict(
        oid: Option<Oid>,
        class: &str,
        reason: ConflictReason,
    ) -> Error {
        let oids: Vec<Oid> = oid.into_iter().collect();
        let details = oids
            .iter()
            .map(|oid| ConflictDetail {
                oid: *oid,
                class: Some(class.to_string()),
                reason: reason.clone(),
            })
            .collect();
        Error::Conflict(ConflictError {
            kind: ConflictKind::Write,
            oids,
            details,
        })
    }

    /// True when a server did not answer in time (see
    /// [`ClientOptions`](crate::storage::ClientOptions)). A commit sent and
    /// not answered is [`Error::OutcomeUnknown`] instead.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Storage(StorageError::Io { source, .. }) | Error::Io(source) => {
                source.kind() == io::ErrorKind::TimedOut
            }
            _ => false,
        }
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

/// ": 3 (shop.Item) was read ...; 17 ...", or nothing without details.
fn detail_list(details: &[ConflictDetail]) -> String {
    let parts: Vec<String> = details
        .iter()
        .map(|d| match &d.class {
            Some(class) => format!("{} ({class}) {}", d.oid, d.reason),
            None => format!("{} {}", d.oid, d.reason),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
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
