//! Records, byte-compatible with Durus's `pack_record`:
//! `oid (8) | data length (u32 BE) | data | refs (8 bytes per oid, sorted, unique)`.
//!
//! Pure functions over bytes; nothing here can panic on bad input.

use crate::error::RecordError;
use crate::oid::Oid;

/// A decoded view of a record's parts, borrowing the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The object id.
    pub oid: Oid,
    /// The object's class name and state (see `docs/FORMAT.md`).
    pub data: &'a [u8],
    /// The packed, sorted oids this object refers to.
    pub refs: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The referenced oids.
    pub fn ref_oids(&self) -> impl Iterator<Item = Oid> + 'a {
        self.refs.chunks_exact(8).filter_map(Oid::from_slice)
    }
}

/// Builds a record. `refs` is sorted and deduplicated here; the object's own
/// oid is left out, as Durus does.
pub fn pack(oid: Oid, data: &[u8], refs: &[Oid]) -> Result<Vec<u8>, RecordError> {
    let len = u32::try_from(data.len()).map_err(|_| RecordError::DataTooLong {
        oid,
        len: data.len(),
    })?;
    let mut sorted: Vec<Oid> = refs.iter().copied().filter(|r| *r != oid).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(12 + data.len() + 8 * sorted.len());
    out.extend_from_slice(&oid.to_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    for r in sorted {
        out.extend_from_slice(&r.to_bytes());
    }
    Ok(out)
}

/// Splits a record into its parts, checking its framing.
pub fn unpack(record: &[u8]) -> Result<RecordView<'_>, RecordError> {
    let oid = Oid::from_slice(record).ok_or(RecordError::Short { len: record.len() })?;
    let len_bytes: [u8; 4] = record
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .ok_or(RecordError::Short { len: record.len() })?;
    let data_len = u32::from_be_bytes(len_bytes) as usize;
    let data_end = 12usize
        .checked_add(data_len)
        .filter(|end| *end <= record.len())
        .ok_or(RecordError::DataPastEnd {
            oid,
            data_len,
            len: record.len(),
        })?;
    let data = record.get(12..data_end).unwrap_or_default();
    let refs = record.get(data_end..).unwrap_or_default();
    if !refs.len().is_multiple_of(8) {
        return Err(RecordError::RefsNotOids {
            oid,
            len: refs.len(),
        });
    }
    Ok(RecordView { oid, data, refs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_durus_pack_record() {
        // Durus: pack_record(int8_to_str(5), b"ab", int8_to_str(2) + int8_to_str(9))
        let rec = pack(Oid(5), b"ab", &[Oid(9), Oid(2), Oid(9), Oid(5)]).unwrap();
        let expected: Vec<u8> = [
            &[0, 0, 0, 0, 0, 0, 0, 5][..],
            &[0, 0, 0, 2],
            b"ab",
            &[0, 0, 0, 0, 0, 0, 0, 2],
            &[0, 0, 0, 0, 0, 0, 0, 9],
        ]
        .concat();
        assert_eq!(rec, expected);
        let view = unpack(&rec).unwrap();
        assert_eq!(view.oid, Oid(5));
        assert_eq!(view.data, b"ab");
        assert_eq!(view.ref_oids().collect::<Vec<_>>(), vec![Oid(2), Oid(9)]);
    }

    #[test]
    fn rejects_bad_framing() {
        assert!(unpack(&[0; 5]).is_err());
        assert!(unpack(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut rec = pack(Oid(1), b"x", &[]).unwrap();
        rec.push(0);
        assert!(unpack(&rec).is_err());
    }
}
