//! Object ids: 64-bit, 8 bytes big-endian on disk and on the wire.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// The id of a stored object. The root object is [`Oid::ROOT`].
///
/// ```
/// use durus_core::{Connection, MemoryStorage, Oid, PRef, PersistentList};
///
/// let conn = Connection::new(MemoryStorage::new());
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// conn.commit()?;
/// assert_eq!(root.oid(), Some(Oid::ROOT));
/// assert_eq!(Oid(5).to_bytes(), [0, 0, 0, 0, 0, 0, 0, 5]);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Oid(pub u64);

impl Oid {
    /// The root object's id.
    pub const ROOT: Oid = Oid(0);
    /// Size of an encoded oid in bytes.
    pub const LEN: usize = 8;

    /// The big-endian encoding used on disk and on the wire.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Decodes the first 8 bytes of `bytes`; `None` when there are fewer.
    pub fn from_slice(bytes: &[u8]) -> Option<Oid> {
        let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(Oid(u64::from_be_bytes(head)))
    }

    /// Splits a packed run of oids; `None` when its length is not a multiple of 8.
    pub fn split_packed(bytes: &[u8]) -> Option<Vec<Oid>> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        Some(bytes.chunks_exact(8).filter_map(Oid::from_slice).collect())
    }

    /// Concatenates the encodings of `oids`.
    pub fn join_packed(oids: &[Oid]) -> Vec<u8> {
        let mut out = Vec::with_capacity(oids.len() * 8);
        for oid in oids {
            out.extend_from_slice(&oid.to_bytes());
        }
        out
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", self.0)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Oid {
    fn from(n: u64) -> Self {
        Oid(n)
    }
}

/// A hasher for oids: one multiply, since oids are dense integers.
#[derive(Default, Clone, Copy)]
pub(crate) struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A hash map keyed by oid, with [`OidHasher`].
pub(crate) type OidMap<V> = HashMap<Oid, V, BuildHasherDefault<OidHasher>>;

/// A hash set of oids, with [`OidHasher`].
pub(crate) type OidSet = std::collections::HashSet<Oid, BuildHasherDefault<OidHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_big_endian() {
        assert_eq!(Oid(258).to_bytes(), [0, 0, 0, 0, 0, 0, 1, 2]);
        let packed = Oid::join_packed(&[Oid(1), Oid(u64::MAX)]);
        assert_eq!(
            Oid::split_packed(&packed),
            Some(vec![Oid(1), Oid(u64::MAX)])
        );
        assert_eq!(Oid::split_packed(&[0; 7]), None);
        assert_eq!(Oid::from_slice(&[1, 2]), None);
    }
}
