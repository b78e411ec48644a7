//! What the `durus` command (the durus-cli crate) and the tests use but a
//! user of the library does not: the byte formats, the wire protocol, the
//! sockets, the shelf layout, the hub's commit exchange, and a seeded
//! generator. Hidden from the documentation and not part of the public
//! API: any of it may change in any release.

use crate::error::Result;
use crate::hub::Session;
use crate::oid::Oid;
use crate::server::Address;

pub use crate::protocol::LoadReply;
pub use crate::storage::file::shelf::empty_file;

/// Records: an oid, the object's data, the oids it refers to (`docs/RECORDS.md`).
pub mod record {
    pub use crate::record::*;
}

/// The data of a record: class name and CBOR state (`docs/RECORDS.md`).
pub mod encoding {
    pub use crate::encoding::*;
}

/// The wire protocol's frames, limits and decoders (`docs/PROTOCOL.md`).
pub mod protocol {
    pub use crate::protocol::*;
}

/// Sockets: TCP and Unix-domain streams and listeners, polled reads.
pub mod net {
    pub use crate::net::*;
}

/// Connects to a server's address (TCP or Unix-domain).
pub fn connect(address: &Address) -> std::io::Result<net::Stream> {
    address.connect()
}

/// Loads the record of `oid` as a session of a hub sees it.
pub fn session_load(session: &Session, oid: Oid) -> Result<LoadReply> {
    session.load(oid)
}

/// Commits `records` as they are through `session` (no resolution round)
/// and waits until the commit is durable.
pub fn session_commit(session: &Session, records: Vec<(Oid, Vec<u8>)>) -> Result<()> {
    session.begin_commit()?.commit(records)?.wait()
}

/// splitmix64: a small seeded generator, the one the benchmark workloads
/// define (their inputs and samples depend on its exact outputs), used by
/// the command's workloads and the randomized tests alike.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next output reduced to `[0, n)` (`n` of 0 counts as 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ if url.contains("password") => "(a connection string with a password)".to_string(),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn splitmix_matches_the_test_vectors() {
        let mut r = SplitMix64::new(42);
        assert_eq!(r.next_u64(), 0xbdd732262feb6e95);
        assert_eq!(r.next_u64(), 0x28efe333b266f103);
        assert_eq!(r.next_u64(), 0x47526757130f9f52);
    }
}
