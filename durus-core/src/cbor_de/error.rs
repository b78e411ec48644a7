//! The decoder's error.

use serde::de;
use std::fmt;

/// Why a decode failed (the kinds of `ciborium::de::Error`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Error {
    /// The data ends inside an item.
    Eof,
    /// Malformed CBOR at this byte offset.
    Syntax(usize),
    /// Well-formed CBOR the type does not accept.
    Semantic(Option<usize>, String),
    /// Items nest deeper than the limit.
    RecursionLimitExceeded,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Eof => f.write_str("the data ends early"),
            Error::Syntax(at) => write!(f, "malformed CBOR at byte {at}"),
            Error::Semantic(_, m) => f.write_str(m),
            Error::RecursionLimitExceeded => f.write_str("the data nests too deeply"),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Semantic(None, msg.to_string())
    }
}
