//! The data part of a record: the class name, then the state, both CBOR.
//!
//! ```text
//! data = CBOR text string (class name) ++ CBOR item (state, via serde)
//! ```
//! A reference to another persistent object inside a state is CBOR tag
//! [`REF_TAG`] around the unsigned integer oid. Python Durus writes pickles
//! instead; their first byte is `0x80` (pickle PROTO), which no CBOR text
//! string starts with, so the two are told apart by one byte.
//!
//! Pure functions over bytes; nothing here can panic on bad input.

use crate::error::EncodingError;
use crate::oid::Oid;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The CBOR tag that marks a reference to a persistent object (0x4455, "DU").
pub const REF_TAG: u64 = 0x4455;

/// The first byte of a Python pickle of protocol 2 or later.
const PICKLE_PROTO: u8 = 0x80;

/// Appends the CBOR head of major type `major` with argument `n`.
fn push_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Encodes `state` of class `class` as a record's data.
pub fn encode<T: Serialize + ?Sized>(
    oid: Option<Oid>,
    class: &str,
    state: &T,
) -> Result<Vec<u8>, EncodingError> {
    with_encode_buffer(|out| {
        push_head(out, 3, class.len() as u64);
        out.extend_from_slice(class.as_bytes());
        ciborium::into_writer(state, &mut *out).map_err(|e| EncodingError::Encode {
            oid,
            message: e.to_string(),
        })?;
        Ok(out.to_vec())
    })
}

thread_local! {
    /// One buffer per thread that states are encoded into before they are
    /// copied out at their size: a `Vec` grown by the encoder would be
    /// reallocated two or three times per object.
    static ENCODE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most an idle encode buffer keeps (a larger state's buffer is freed).
const ENCODE_BUFFER_KEEP: usize = 64 * 1024;

/// Runs `f` with this thread's encode buffer, emptied (taken out of the
/// thread-local while `f` runs, so that a nested encode gets a new one).
fn with_encode_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = ENCODE_BUFFER
        .try_with(|cell| cell.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)))
        .ok()
        .and_then(|taken| taken.ok())
        .unwrap_or_default();
    buf.clear();
    let out = f(&mut buf);
    if buf.capacity() <= ENCODE_BUFFER_KEEP {
        let _ = ENCODE_BUFFER.try_with(|cell| {
            if let Ok(mut kept) = cell.try_borrow_mut() {
                *kept = buf;
            }
        });
    }
    out
}

/// Splits a record's data into its class name and the encoded state.
pub fn split(oid: Oid, data: &[u8]) -> Result<(&str, &[u8]), EncodingError> {
    let bad = |message: &str| EncodingError::Decode {
        oid,
        message: message.to_string(),
    };
    let first = *data.first().ok_or_else(|| bad("empty data"))?;
    if first == PICKLE_PROTO {
        return Err(EncodingError::Foreign {
            oid,
            class: pickle_class_name(data).unwrap_or_else(|| "?".to_string()),
        });
    }
    if first >> 5 != 3 {
        return Err(bad("data does not start with a class name"));
    }
    let (len, head) = match first & 0x1f {
        n @ 0..=23 => (n as u64, 1),
        24 => (
            *data.get(1).ok_or_else(|| bad("truncated class name"))? as u64,
            2,
        ),
        25 => (
            be_uint(data.get(1..3)).ok_or_else(|| bad("truncated class name"))?,
            3,
        ),
        26 => (
            be_uint(data.get(1..5)).ok_or_else(|| bad("truncated class name"))?,
            5,
        ),
        27 => (
            be_uint(data.get(1..9)).ok_or_else(|| bad("truncated class name"))?,
            9,
        ),
        _ => return Err(bad("class name has an indefinite length")),
    };
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(head))
        .filter(|end| *end <= data.len())
        .ok_or_else(|| bad("class name runs past the data"))?;
    let class = data
        .get(head..end)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| bad("class name is not UTF-8"))?;
    Ok((class, data.get(end..).unwrap_or_default()))
}

/// A big-endian unsigned integer of 1 to 8 bytes (`None` past the end).
#[inline]
pub(crate) fn be_uint(bytes: Option<&[u8]>) -> Option<u64> {
    let bytes = bytes?;
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// The class of a record's data, whoever wrote it (`module.Class` for Python).
pub fn class_name(oid: Oid, data: &[u8]) -> Result<String, EncodingError> {
    match split(oid, data) {
        Ok((class, _)) => Ok(class.to_string()),
        Err(EncodingError::Foreign { class, .. }) => Ok(class),
        Err(e) => Err(e),
    }
}

/// The class named by a pickle's leading GLOBAL opcode (`c module\n name\n`).
pub fn pickle_class_name(data: &[u8]) -> Option<String> {
    let rest = data.get(2..)?.strip_prefix(b"c")?;
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let module = std::str::from_utf8(parts.next()?).ok()?;
    let name = std::str::from_utf8(parts.next()?).ok()?;
    parts.next()?;
    Some(format!("{module}.{name}"))
}

/// Decodes a state of class `class`, refusing other classes and trailing bytes.
pub fn decode<T: DeserializeOwned>(oid: Oid, class: &str, data: &[u8]) -> Result<T, EncodingError> {
    let (found, state) = split(oid, data)?;
    if found != class {
        return Err(EncodingError::WrongClass {
            oid,
            expected: class.to_string(),
            found: found.to_string(),
        });
    }
    let (value, used) = crate::cbor_de::from_slice(state).map_err(|e| EncodingError::Decode {
        oid,
        message: e.to_string(),
    })?;
    if used < state.len() {
        return Err(EncodingError::Decode {
            oid,
            message: format!("{} bytes after the state", state.len() - used),
        });
    }
    Ok(value)
}

/// The most nested CBOR items [`item_len`] follows (ciborium's limit too).
const MAX_DEPTH: usize = 256;

/// The head of a CBOR item: major type, argument (`None` for an indefinite
/// length) and head length.
fn head(bytes: &[u8]) -> Option<(u8, Option<u64>, usize)> {
    let first = *bytes.first()?;
    let (major, info) = (first >> 5, first & 0x1f);
    let (arg, len) = match info {
        n @ 0..=23 => (Some(n as u64), 1),
        24 => (Some(*bytes.get(1)? as u64), 2),
        25 => (Some(be_uint(bytes.get(1..3))?), 3),
        26 => (Some(be_uint(bytes.get(1..5))?), 5),
        27 => (Some(be_uint(bytes.get(1..9))?), 9),
        31 if matches!(major, 2..=5 | 7) => (None, 1),
        _ => return None,
    };
    Some((major, arg, len))
}

/// The length in bytes of the CBOR data item at the start of `bytes`, or
/// `None` when it is malformed or runs past the end.
pub(crate) fn item_len(bytes: &[u8]) -> Option<usize> {
    item_len_at(bytes, 0)
}

fn item_len_at(bytes: &[u8], depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (major, arg, mut at) = head(bytes)?;
    let nested = |at: usize| element_len(bytes.get(at..)?, depth + 1);
    match (major, arg) {
        (0 | 1 | 7, Some(_)) => {}
        (2 | 3, Some(n)) => at = at.checked_add(usize::try_from(n).ok()?)?,
        (2 | 3, None) => loop {
            if *bytes.get(at)? == 0xff {
                at += 1;
                break;
            }
            at += nested(at)?;
        },
        (4 | 5, Some(n)) => {
            let items = if major == 5 { n.checked_mul(2)? } else { n };
            for _ in 0..items {
                at += nested(at)?;
            }
        }
        (4 | 5, None) => loop {
            if *bytes.get(at)? == 0xff {
                at += 1;
                break;
            }
            at += nested(at)?;
        },
        (6, Some(_)) => at += nested(at)?,
        (7, None) => return None, // a lone break
        _ => return None,
    }
    (at <= bytes.len()).then_some(at)
}

/// [`item_len_at`] with the common small items (integers, simple values,
/// short strings) measured from their first byte alone. A string's length
/// is checked against the end by the enclosing item.
#[inline]
fn element_len(bytes: &[u8], depth: usize) -> Option<usize> {
    let first = *bytes.first()?;
    match first {
        0x00..=0x17 | 0x20..=0x37 | 0xe0..=0xf7 => Some(1),
        0x40..=0x57 | 0x60..=0x77 => Some(1 + usize::from(first & 0x1f)),
        0x18 | 0x38 | 0xf8 => Some(2),
        0x19 | 0x39 | 0xf9 => Some(3),
        0x1a | 0x3a | 0xfa => Some(5),
        0x1b | 0x3b | 0xfb => Some(9),
        _ => item_len_at(bytes, depth),
    }
}

/// One entry of a CBOR map: its key when the key is a text string, and
/// the raw bytes of the key and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapEntry<'a> {
    pub(crate) key: Option<&'a str>,
    pub(crate) bytes: &'a [u8],
}

/// The keys of a map, without measuring the value of the last entry of a
/// definite map (often the largest), for a caller that only needs the
/// bytes of some entries: [`KeyCursor::entry`] measures on demand.
pub(crate) struct KeyCursor<'a> {
    rest: &'a [u8],
    left: Option<u64>,
    /// The current entry: its start and its key's length.
    current: Option<(&'a [u8], usize)>,
}

impl<'a> KeyCursor<'a> {
    /// The next key's UTF-8 bytes (`Some(None)` for a key that is not a
    /// text string), or `None` at the end of the map or at malformed bytes.
    /// The bytes are not checked to be UTF-8: callers compare them with
    /// field names.
    pub(crate) fn next_key(&mut self) -> Option<Option<&'a [u8]>> {
        if self.left == Some(0) {
            return None;
        }
        if let Some((start, key_len)) = self.current.take() {
            let value_len = element_len(start.get(key_len..)?, 0)?;
            self.rest = start.get(key_len.checked_add(value_len)?..)?;
        }
        match self.left {
            Some(0) => return None,
            Some(ref mut n) => *n -= 1,
            None if matches!(self.rest.first(), None | Some(0xff)) => return None,
            None => {}
        }
        let first = *self.rest.first()?;
        if (0x60..=0x77).contains(&first) {
            // A short text key, the usual case: its length is in its head.
            let key_len = 1 + usize::from(first & 0x1f);
            self.current = Some((self.rest, key_len));
            return Some(Some(self.rest.get(1..key_len)?));
        }
        let key_len = item_len(self.rest)?;
        self.current = Some((self.rest, key_len));
        let bytes = self.rest.get(..key_len)?;
        Some(match head(bytes) {
            Some((3, Some(n), h)) => usize::try_from(n)
                .ok()
                .and_then(|n| bytes.get(h..h.checked_add(n)?)),
            _ => None,
        })
    }

    /// The raw bytes (key and value) of the entry whose key was returned last.
    pub(crate) fn entry(&self) -> Option<&'a [u8]> {
        let (start, key_len) = self.current?;
        let value_len = item_len(start.get(key_len..)?)?;
        start.get(..key_len.checked_add(value_len)?)
    }
}

/// The keys of the map `state` starts with, or `None` when it is not a map.
pub(crate) fn map_keys(state: &[u8]) -> Option<KeyCursor<'_>> {
    let (major, arg, len) = head(state)?;
    (major == 5).then(|| KeyCursor {
        rest: state.get(len..).unwrap_or_default(),
        left: arg,
        current: None,
    })
}

/// The entries of a map (or of raw concatenated entries). Stops at the
/// end, at the break of an indefinite map, or at malformed bytes.
pub(crate) struct Entries<'a> {
    rest: &'a [u8],
    /// Entries left in a definite map; `None` runs to the end or a break.
    left: Option<u64>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = MapEntry<'a>;

    fn next(&mut self) -> Option<MapEntry<'a>> {
        match self.left {
            Some(0) => return None,
            Some(ref mut n) => *n -= 1,
            None if matches!(self.rest.first(), None | Some(0xff)) => return None,
            None => {}
        }
        let key_len = item_len(self.rest)?;
        let value_len = item_len(self.rest.get(key_len..)?)?;
        let end = key_len.checked_add(value_len)?;
        let (bytes, rest) = (self.rest.get(..end)?, self.rest.get(end..)?);
        let key = match head(bytes) {
            Some((3, Some(n), h)) => bytes
                .get(h..h.checked_add(usize::try_from(n).ok()?)?)
                .and_then(|b| std::str::from_utf8(b).ok()),
            _ => None,
        };
        self.rest = rest;
        Some(MapEntry { key, bytes })
    }
}

/// The entries of the map `state` starts with, or `None` when it is not a map.
pub(crate) fn map_entries(state: &[u8]) -> Option<Entries<'_>> {
    let (major, arg, len) = head(state)?;
    (major == 5).then(|| Entries {
        rest: state.get(len..).unwrap_or_default(),
        left: arg,
    })
}

/// The entries of `raw`, a concatenation of map entries without a head.
pub(crate) fn raw_entries(raw: &[u8]) -> Entries<'_> {
    Entries {
        rest: raw,
        left: None,
    }
}

/// The head of a definite map of `n` entries.
pub(crate) fn map_head(n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    push_head(&mut out, 5, n);
    out
}

/// Adds `count` raw `entries` to the map that starts at `out[start]` and
/// runs to the end of `out`. False when there is no map there.
pub(crate) fn append_to_map(out: &mut Vec<u8>, start: usize, entries: &[u8], count: u64) -> bool {
    let Some((5, arg, len)) = out.get(start..).and_then(head) else {
        return false;
    };
    match arg {
        Some(n) => {
            let Some(total) = n.checked_add(count) else {
                return false;
            };
            let new_head = map_head(total);
            out.splice(start..start + len, new_head);
            out.extend_from_slice(entries);
        }
        None => {
            // An indefinite map ends with a break (0xff): insert before it.
            if out.last() != Some(&0xff) {
                return false;
            }
            let at = out.len() - 1;
            out.splice(at..at, entries.iter().copied());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_then_state() {
        let data = encode(None, "app::Point", &(1u8, 2u8)).unwrap();
        assert_eq!(data[0], 0x60 | 10);
        assert_eq!(&data[1..11], b"app::Point");
        assert_eq!(&data[11..], &[0x82, 0x01, 0x02]);
        let (class, state) = split(Oid(1), &data).unwrap();
        assert_eq!((class, state), ("app::Point", &[0x82, 0x01, 0x02][..]));
        assert_eq!(
            decode::<(u8, u8)>(Oid(1), "app::Point", &data).unwrap(),
            (1, 2)
        );
    }

    #[test]
    fn long_class_names() {
        let name = "x".repeat(300);
        let data = encode(None, &name, &0u8).unwrap();
        assert_eq!(&data[..3], &[0x79, 0x01, 0x2c]);
        assert_eq!(split(Oid(1), &data).unwrap().0, name);
    }

    #[test]
    fn python_pickles_are_named() {
        let pickle = b"\x80\x02cdurus.persistent_dict\nPersistentDict\nq\x00.";
        assert_eq!(
            split(Oid(0), pickle),
            Err(EncodingError::Foreign {
                oid: Oid(0),
                class: "durus.persistent_dict.PersistentDict".into()
            })
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for data in [
            &b""[..],
            b"\x7b\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x61",
            b"\x01\x02",
            b"\x7f",
        ] {
            assert!(split(Oid(3), data).is_err(), "{data:?}");
        }
        let data = encode(None, "A", &5u32).unwrap();
        assert!(decode::<u32>(Oid(1), "B", &data).is_err());
        assert!(decode::<String>(Oid(1), "A", &data).is_err());
        let mut extra = data.clone();
        extra.push(0);
        assert!(decode::<u32>(Oid(1), "A", &extra).is_err());
    }

    #[test]
    fn map_entries_and_item_lengths() {
        let mut state = Vec::new();
        let value = std::collections::BTreeMap::from([
            ("a", serde_cbor_like(1)),
            ("bb", serde_cbor_like(300)),
        ]);
        ciborium::into_writer(&value, &mut state).unwrap();
        assert_eq!(item_len(&state), Some(state.len()));
        let keys: Vec<_> = map_entries(&state).unwrap().map(|e| e.key).collect();
        assert_eq!(keys, [Some("a"), Some("bb")]);
        assert!(map_entries(&[0x82, 1, 2]).is_none());
        // Truncated or malformed items have no length.
        assert_eq!(item_len(&state[..state.len() - 1]), None);
        assert_eq!(item_len(&[0xff]), None);
        assert_eq!(item_len(&[0x9f, 0x01, 0x02, 0xff]), Some(4));
        assert_eq!(item_len(&[0xd9, 0x44, 0x55, 0x03]), Some(4));
        let deep = vec![0x81; 1000];
        assert_eq!(item_len(&deep), None);
    }

    fn serde_cbor_like(n: u32) -> Vec<u32> {
        vec![n; 3]
    }

    #[test]
    fn entries_are_appended_to_a_map() {
        let mut out = vec![0x61, b'C', 0xa1, 0x61, b'a', 0x01];
        let extra = [0x61, b'z', 0x02];
        assert!(append_to_map(&mut out, 2, &extra, 1));
        assert_eq!(out, [0x61, b'C', 0xa2, 0x61, b'a', 0x01, 0x61, b'z', 0x02]);
        // 23 + 1 entries need a longer head.
        let mut out = vec![0xb7];
        for i in 0..23u8 {
            out.extend_from_slice(&[i]);
            out.extend_from_slice(&[0]);
        }
        assert!(append_to_map(&mut out, 0, &[0x18, 0x40, 0x00], 1));
        assert_eq!(&out[..2], &[0xb8, 24]);
        assert_eq!(map_entries(&out).unwrap().count(), 24);
        let mut out = vec![0xbf, 0x61, b'a', 0x01, 0xff];
        assert!(append_to_map(&mut out, 0, &extra, 1));
        assert_eq!(out, [0xbf, 0x61, b'a', 0x01, 0x61, b'z', 0x02, 0xff]);
        let mut not_a_map = vec![0x82, 1, 2];
        assert!(!append_to_map(&mut not_a_map, 0, &extra, 1));
    }
}
