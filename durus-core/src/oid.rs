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

/// A hasher for oids that keeps neighbours near: oids are handed out in
/// order, and a transaction or a traversal touches runs of them, so the
/// low 8 bits of an oid place it within a block of 256 buckets and only
/// the block is scattered (and turned). A run of oids is then a run of buckets (a few
/// cache lines instead of a miss per oid: twice the speed of a cold
/// traversal), while oids of any stride still spread over the whole
/// table. The top 7 bits, which the table compares first, are mixed from
/// the whole oid, so that the oids of one block are told apart without
/// reading their keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct OidHasher(u64);

/// The bits of a hash that place an oid within its block.
const IN_BLOCK: u64 = 0xFF;

/// The bits of a hash the table compares first (hashbrown's tag).
const TAG: u64 = 0xFE00_0000_0000_0000;

/// The hash of one oid: the block's place, the place in the block (turned
/// by a per-block amount, so that oids 256 apart do not all share one
/// place), a tag.
fn oid_hash(n: u64) -> u64 {
    let block = (n >> 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let turn = block >> 56;
    let tag = n.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (tag & TAG) | ((block >> 15) & !TAG & !IN_BLOCK) | (n.wrapping_add(turn) & IN_BLOCK)
}

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
        self.0 = oid_hash(n);
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

    /// The most oids that start their probe in one group of 16 buckets,
    /// for `count` oids `first, first + stride, ...` in a table of
    /// `buckets` buckets (hashbrown's start bucket: the hash's low bits).
    fn fullest_group(first: u64, stride: u64, count: u64, buckets: u64) -> u64 {
        let mut groups = vec![0u64; (buckets / 16) as usize];
        for i in 0..count {
            let bucket = oid_hash(first + i * stride) & (buckets - 1);
            groups[(bucket / 16) as usize] += 1;
        }
        groups.into_iter().max().unwrap_or(0)
    }

    #[test]
    fn oids_of_any_stride_spread_over_the_table() {
        // A table 7/8 full; a random hash gives a fullest group of about
        // 30 here. Runs of oids fill their groups exactly (16).
        for stride in [
            1,
            2,
            3,
            7,
            16,
            31,
            64,
            255,
            256,
            1000,
            1024,
            4096,
            1 << 16,
            1 << 32,
        ] {
            for buckets in [1u64 << 12, 1 << 16] {
                let count = buckets / 8 * 7;
                let fullest = fullest_group(12_345, stride, count, buckets);
                assert!(
                    fullest <= 48,
                    "stride {stride}, {buckets} buckets: {fullest} in one group"
                );
            }
        }
        assert!(fullest_group(0, 1, 1 << 15, 1 << 16) <= 32);
    }

    #[test]
    fn neighbours_get_different_tags() {
        let tags: std::collections::HashSet<u64> = (0..256).map(|n| oid_hash(n) >> 57).collect();
        assert!(tags.len() > 100, "{} tags for one block", tags.len());
    }
}
