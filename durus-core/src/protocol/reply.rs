//! Server-to-client frames: load replies, oid lists, status bytes, version.

use super::{
    put_u32, take, wire_len, Cursor, Decoded, MAX_RECORD_LEN, STATUS_INVALID, STATUS_KEYERROR,
    STATUS_OKAY,
};
use crate::error::{Error, Result};
use crate::oid::Oid;

/// The reply to one load (`L`, each oid of `B`, each oid of a resolution
/// request), as the hub answers it and the wire carries it.
///
/// ```text
/// 'O' | length u32 | record     (length at most MAX_RECORD_LEN)
/// 'K'                           no record under that oid
/// 'I'                           the client's copy is obsolete: sync first
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadReply {
    /// The record.
    Record(Vec<u8>),
    /// No such oid.
    Missing,
    /// The session's copy is obsolete: it must sync first.
    Invalid,
}

impl LoadReply {
    /// Decodes one load reply from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Decoded<LoadReply> {
        let mut c = Cursor::new(buf);
        match take!(c.u8()) {
            STATUS_OKAY => {
                let len = take!(c.u32()) as usize;
                if len > MAX_RECORD_LEN {
                    return Decoded::Malformed(format!(
                        "record of {len} bytes is over the limit of {MAX_RECORD_LEN}"
                    ));
                }
                let rec = take!(c.bytes(len));
                Decoded::Frame(LoadReply::Record(rec.to_vec()), c.pos())
            }
            STATUS_KEYERROR => Decoded::Frame(LoadReply::Missing, 1),
            STATUS_INVALID => Decoded::Frame(LoadReply::Invalid, 1),
            other => Decoded::Malformed(format!("unknown load status byte {other:#04x}")),
        }
    }

    /// Appends the encoding of this reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            LoadReply::Record(rec) => {
                out.push(STATUS_OKAY);
                put_u32(out, wire_len(rec.len()));
                out.extend_from_slice(rec);
            }
            LoadReply::Missing => out.push(STATUS_KEYERROR),
            LoadReply::Invalid => out.push(STATUS_INVALID),
        }
    }

    /// The record, or the error a load of `oid` reports: not found, or a
    /// read conflict for an obsolete copy.
    pub fn into_record(self, oid: Oid) -> Result<Vec<u8>> {
        match self {
            LoadReply::Record(rec) => Ok(rec),
            LoadReply::Missing => Err(Error::NotFound(oid)),
            LoadReply::Invalid => Err(Error::read_conflict(oid)),
        }
    }
}

/// The records among the replies to the loads of a resolution round, each
/// with its oid. An oid with no record has nothing to merge with and is
/// left out.
pub fn records_only(replies: impl IntoIterator<Item = (Oid, LoadReply)>) -> Vec<(Oid, Vec<u8>)> {
    replies
        .into_iter()
        .filter_map(|(oid, reply)| match reply {
            LoadReply::Record(rec) => Some((oid, rec)),
            _ => None,
        })
        .collect()
}

/// Encodes an oid list (the reply to `S` and the start of `C`):
///
/// ```text
/// count u32 | count × oid (8)
/// ```
pub fn encode_oid_list(oids: &[Oid], out: &mut Vec<u8>) {
    put_u32(out, wire_len(oids.len()));
    for oid in oids {
        out.extend_from_slice(&oid.to_bytes());
    }
}

/// Decodes an oid list of at most `max` oids.
pub fn decode_oid_list(buf: &[u8], max: usize) -> Decoded<Vec<Oid>> {
    let mut c = Cursor::new(buf);
    let count = take!(c.u32()) as usize;
    if count > max {
        return Decoded::Malformed(format!("list of {count} oids is over the limit of {max}"));
    }
    let oids = take!(c.oids(count));
    Decoded::Frame(oids, c.pos())
}

/// Decodes exactly `count` packed oids (the reply to `N` and `M`).
pub fn decode_fixed_oids(buf: &[u8], count: usize) -> Decoded<Vec<Oid>> {
    let mut c = Cursor::new(buf);
    let oids = take!(c.oids(count));
    Decoded::Frame(oids, c.pos())
}

/// Decodes one status byte (`O`, `K` or `I`).
pub fn decode_status(buf: &[u8]) -> Decoded<u8> {
    match buf.first() {
        None => Decoded::Need(1),
        Some(&b) if matches!(b, STATUS_OKAY | STATUS_KEYERROR | STATUS_INVALID) => {
            Decoded::Frame(b, 1)
        }
        Some(b) => Decoded::Malformed(format!("unknown status byte {b:#04x}")),
    }
}

/// Decodes the server's protocol version (the reply to `V`).
pub fn decode_version(buf: &[u8]) -> Decoded<u32> {
    let mut c = Cursor::new(buf);
    let v = take!(c.u32());
    Decoded::Frame(v, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_responses() {
        let mut out = Vec::new();
        LoadReply::Record(b"abc".to_vec()).encode(&mut out);
        assert_eq!(out, b"O\x00\x00\x00\x03abc");
        assert_eq!(
            LoadReply::decode(&out),
            Decoded::Frame(LoadReply::Record(b"abc".to_vec()), 8)
        );
        assert_eq!(LoadReply::decode(&out[..5]), Decoded::Need(8));
        assert_eq!(
            LoadReply::decode(b"K"),
            Decoded::Frame(LoadReply::Missing, 1)
        );
        assert!(matches!(LoadReply::decode(b"Z"), Decoded::Malformed(_)));
        assert!(matches!(
            LoadReply::decode(b"O\xff\xff\xff\xff"),
            Decoded::Malformed(_)
        ));
    }

    #[test]
    fn oid_lists() {
        let mut out = Vec::new();
        encode_oid_list(&[Oid(1), Oid(2)], &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(
            decode_oid_list(&out, 10),
            Decoded::Frame(vec![Oid(1), Oid(2)], 20)
        );
        assert!(matches!(decode_oid_list(&out, 1), Decoded::Malformed(_)));
        assert_eq!(decode_oid_list(&out[..9], 10), Decoded::Need(20));
    }
}
