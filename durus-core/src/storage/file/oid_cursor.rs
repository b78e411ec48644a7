//! Where a file's new oids come from: Durus's order, the holes of the
//! offset map first, then the oids past it.

use super::shelf::Holes;
use super::FileIo;
use crate::error::{Error, Result, StorageError};

/// Where new oids come from: Durus's list of holes, then past the map.
pub(super) enum OidCursor {
    Holes(Holes),
    Grow(u64),
}

impl OidCursor {
    /// The next candidate oid: the map's next hole while there is one, then
    /// the oids past the map (`map_words`) in turn.
    pub(super) fn next(&mut self, io: &dyn FileIo, map_words: u64) -> Result<u64> {
        loop {
            match self {
                OidCursor::Holes(holes) => match holes.next_hole(io)? {
                    Some(hole) => return Ok(hole),
                    None => *self = OidCursor::Grow(map_words),
                },
                OidCursor::Grow(next) => {
                    let oid = *next;
                    *next = next
                        .checked_add(1)
                        .ok_or_else(|| Error::Storage(StorageError::Other("out of oids".into())))?;
                    return Ok(oid);
                }
            }
        }
    }
}
